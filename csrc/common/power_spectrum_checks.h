// bin_power's and bin_power_backward's arguments (host code only), for the CPU and CUDA
// implementations alike.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace lss {

// spectrum (..., M, 2) (a complex spectrum viewed as real pairs), index (M,) int32 (bin
// numbers: 4 bytes a mode is a quarter of the kernel's memory traffic) and optional weight
// (M,). Index entries outside [0, nbins) leave the mode out (see power_spectrum.h), so no pass
// over the index is needed to make any index safe. Returns M.
inline int64_t check_bin_power_args(const at::Tensor& spectrum, const at::Tensor& index,
                                    const c10::optional<at::Tensor>& weight, int64_t nbins) {
  check_nbins(nbins);
  LSS_CHECK_FLOATING(spectrum, "spectrum");
  TORCH_CHECK(spectrum.dim() >= 2 && spectrum.size(-1) == 2,
              "spectrum must have shape (..., M, 2) (torch.view_as_real of a complex spectrum), got ",
              spectrum.sizes());
  const int64_t length = spectrum.size(-2);
  TORCH_CHECK(index.scalar_type() == at::kInt && index.dim() == 1 && index.size(0) == length,
              "index must be an int32 tensor of shape (M,) = (", length, ",), got ",
              index.scalar_type(), " ", index.sizes());
  LSS_CHECK_SAME_DEVICE(index, spectrum, "index", "spectrum");
  if (weight.has_value() && weight->defined()) {
    TORCH_CHECK(weight->dim() == 1 && weight->size(0) == length, "weight must have shape (M,)");
    TORCH_CHECK(weight->scalar_type() == spectrum.scalar_type(), "weight dtype differs from spectrum");
    LSS_CHECK_SAME_DEVICE(*weight, spectrum, "weight", "spectrum");
  }
  return length;
}

// grad (..., nbins), one row per spectrum row. Returns M.
inline int64_t check_bin_power_backward_args(const at::Tensor& grad, const at::Tensor& spectrum,
                                             const at::Tensor& index,
                                             const c10::optional<at::Tensor>& weight) {
  LSS_CHECK_FLOATING(grad, "grad");
  TORCH_CHECK(grad.dim() >= 1, "grad must have shape (..., nbins)");
  const int64_t nbins = grad.size(-1);
  const int64_t length = check_bin_power_args(spectrum, index, weight, nbins);
  TORCH_CHECK(grad.numel() == (length == 0 ? grad.numel() : spectrum.numel() / (2 * length)) * nbins,
              "grad has ", grad.numel(), " entries; expected one row of nbins per spectrum row");
  TORCH_CHECK(grad.scalar_type() == spectrum.scalar_type(), "grad dtype differs from spectrum");
  LSS_CHECK_SAME_DEVICE(grad, spectrum, "grad", "spectrum");
  return length;
}

}  // namespace lss
