// Argument validation helpers shared by every op (host code only). Each op's own checks are in
// common/<op>_checks.h. Every user-facing mistake becomes a TORCH_CHECK (a Python RuntimeError)
// that names the argument; nothing is read or written before an op's checks pass.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

#include "hd.h"

namespace lss {

// Counts non-finite entries. On the CPU a parallel scan with no temporary; on other
// devices one ATen reduction (and one sync).
inline int64_t count_nonfinite(const at::Tensor& t) {
  if (t.numel() == 0) return 0;
  if (!t.is_cpu()) return at::logical_not(at::isfinite(t)).sum().item<int64_t>();
  const at::Tensor c = t.contiguous();
  int64_t bad = 0;
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "count_nonfinite", [&] {
    const scalar_t* p = c.data_ptr<scalar_t>();
    bad = at::parallel_reduce(
        0, c.numel(), 1 << 16, int64_t{0},
        [&](int64_t b, int64_t e, int64_t acc) {
          // x - x is 0 for a finite x and NaN for an infinite or NaN one: a compare without a
          // branch or a libm call, which the compiler vectorises
          int64_t count = 0;
          for (int64_t i = b; i < e; ++i) count += (p[i] - p[i]) != scalar_t(0);
          return acc + count;
        },
        [](int64_t x, int64_t y) { return x + y; });
  });
  return bad;
}

// The number of bins of a histogram-like result (soft_histogram, bin_power).
inline void check_nbins(int64_t nbins) {
  TORCH_CHECK(nbins >= 1, "nbins must be >= 1, got ", nbins);
  TORCH_CHECK(nbins <= (int64_t{1} << 26), "nbins is too large: ", nbins);
}

inline at::Tensor weights_or_undefined(const c10::optional<at::Tensor>& weights) {
  if (weights.has_value() && weights->defined()) return weights->contiguous();
  return at::Tensor();
}

// sizes with the last dimension replaced: (..., M) -> (..., last).
inline std::vector<int64_t> with_last(at::IntArrayRef sizes, int64_t last) {
  std::vector<int64_t> out(sizes.begin(), sizes.end());
  out.back() = last;
  return out;
}

}  // namespace lss
