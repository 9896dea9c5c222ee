// Shared macros (and the smallest shared helper) for code compiled by both the host compiler
// and nvcc.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LSS_HD __host__ __device__ __attribute__((always_inline))
#else
#define LSS_HD __attribute__((always_inline))
#endif

#define LSS_CHECK_FLOATING(t, name)                                              \
  TORCH_CHECK((t).scalar_type() == at::kFloat || (t).scalar_type() == at::kDouble, \
              name " must be float32 or float64, got ", (t).scalar_type())

#define LSS_CHECK_SAME_DEVICE(a, b, name_a, name_b)                             \
  TORCH_CHECK((a).device() == (b).device(), name_a " is on ", (a).device(),      \
              " but " name_b " is on ", (b).device())

namespace lss {

// weights[i] in float64, or 1 when there are no weights (a null pointer).
template <typename scalar_t>
LSS_HD inline double weight_or_one(const scalar_t* weights, int64_t i) {
  return weights != nullptr ? static_cast<double>(weights[i]) : 1.0;
}

}  // namespace lss
