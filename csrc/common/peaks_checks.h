// find_peaks' arguments (host code only), for the CPU and CUDA implementations alike.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace lss {

// The largest neighbourhood half-width find_peaks takes; the CPU kernel sizes its per-task
// arrays by it, so every path into a kernel goes through check_find_peaks_args first.
constexpr int64_t kMaxPeakRadius = 5;

// A batch of cubes (..., n, n, n): returns n, or fails naming the argument.
inline int64_t check_cubes(const at::Tensor& field, const char* name) {
  LSS_CHECK_FLOATING(field, "field");
  TORCH_CHECK(field.dim() >= 3, name, " must have shape (..., n, n, n), got ", field.sizes());
  const int64_t n = field.size(-1);
  TORCH_CHECK(field.size(-2) == n && field.size(-3) == n, name,
              " must be cubic in its last three dimensions, got ", field.sizes());
  return n;
}

// Returns n. Called first by the CPU and the CUDA implementation: the raw op
// torch.ops.lsscore.find_peaks is checked like the Python wrapper.
inline int64_t check_find_peaks_args(const at::Tensor& field, int64_t radius, bool periodic) {
  const int64_t n = check_cubes(field, "field");
  TORCH_CHECK(radius >= 1 && radius <= kMaxPeakRadius, "radius must be between 1 and ",
              kMaxPeakRadius, ", got ", radius);
  TORCH_CHECK(!periodic || n >= 2 * radius + 1, "a periodic cube of ", n,
              " cells per side is smaller than the neighbourhood of radius ", radius,
              " (needs n >= ", 2 * radius + 1, "); use boundary='open' or a smaller radius");
  return n;
}

}  // namespace lss
