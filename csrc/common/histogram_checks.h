// soft_histogram's and soft_histogram_backward's arguments (host code only), for the CPU and
// CUDA implementations alike.
#pragma once

#include <ATen/ATen.h>
#include <cmath>
#include <vector>

#include "checks.h"

namespace lss {

inline void check_range(double lo, double hi) {
  TORCH_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
              "need finite lo < hi, got lo=", lo, " hi=", hi);
}

// Values are mapped to bins through (v - lo) nbins / (hi - lo): both factors must be finite
// doubles (too narrow a range would turn values into NaN bin positions).
inline void check_bin_width(double lo, double hi, int64_t nbins) {
  TORCH_CHECK(std::isfinite(hi - lo) && std::isfinite(static_cast<double>(nbins) / (hi - lo)),
              "the range [", lo, ", ", hi, "] cannot be cut into ", nbins,
              " bins of a finite, non-zero width");
}

// (..., M) values with optional same-shaped weights. With count_nan, NaN values are an
// error here (one ATen pass); kernels that count NaN themselves pass false.
inline void check_values_weights(const at::Tensor& values, const c10::optional<at::Tensor>& weights,
                                 bool count_nan) {
  LSS_CHECK_FLOATING(values, "values");
  TORCH_CHECK(values.dim() >= 1, "values must have shape (..., M), got a scalar");
  if (count_nan && values.numel() > 0) {
    const int64_t nan = at::isnan(values).sum().item<int64_t>();
    TORCH_CHECK(nan == 0, "values contain ", nan, " NaN entries");
  }
  if (weights.has_value() && weights->defined()) {
    const at::Tensor& w = *weights;
    TORCH_CHECK(w.sizes() == values.sizes(), "weights must have the shape of values ",
                values.sizes(), ", got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == values.scalar_type(), "weights dtype ", w.scalar_type(),
                " differs from values dtype ", values.scalar_type());
    LSS_CHECK_SAME_DEVICE(w, values, "weights", "values");
    const int64_t bad = count_nonfinite(w);
    TORCH_CHECK(bad == 0, "weights contain ", bad, " non-finite values");
  }
}

// soft_histogram; count_nan as in check_values_weights.
inline void check_soft_histogram_args(const at::Tensor& values,
                                      const c10::optional<at::Tensor>& weights, double lo,
                                      double hi, int64_t nbins, bool count_nan) {
  check_values_weights(values, weights, count_nan);
  check_range(lo, hi);
  check_nbins(nbins);
  check_bin_width(lo, hi, nbins);
}

// soft_histogram_backward: grad is (..., nbins) for values (..., M). NaN values are allowed
// (they get zero gradient).
inline void check_soft_histogram_backward_args(const at::Tensor& grad, const at::Tensor& values,
                                               const c10::optional<at::Tensor>& weights,
                                               double lo, double hi, int64_t nbins) {
  check_soft_histogram_args(values, weights, lo, hi, nbins, /*count_nan=*/false);
  const std::vector<int64_t> expected = with_last(values.sizes(), nbins);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(expected), "grad must have shape ",
              at::IntArrayRef(expected), ", got ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == values.scalar_type(), "grad dtype differs from values dtype");
  LSS_CHECK_SAME_DEVICE(grad, values, "grad", "values");
}

}  // namespace lss
