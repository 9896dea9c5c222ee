// CPU find_peaks: one task per (cube, x-plane). Interior rows first compare every voxel with
// its six face neighbours in a branch-free loop the compiler vectorises; only the survivors
// (about 1 in 7 for a random field) take the full, early-exit test with linear offsets. The
// boundary shell uses the wrapped or cropped test (csrc/common/peaks.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "../common/neighbours.h"
#include "../common/peaks.h"

namespace lss {
namespace {

at::Tensor find_peaks_cpu(const at::Tensor& field, int64_t radius, bool periodic) {
  const int64_t n = check_find_peaks_args(field, radius, periodic);
  const at::Tensor f = field.contiguous();
  at::Tensor out = at::zeros(field.sizes(), field.options().dtype(at::kBool));
  if (f.numel() == 0) return out;
  const int64_t cubes = f.numel() / (n * n * n);
  const std::vector<int32_t> offsets = neighbour_offsets(radius);
  const int64_t count = static_cast<int64_t>(offsets.size() / 3);
  std::vector<int64_t> linear(count);
  for (int64_t k = 0; k < count; ++k) {
    linear[k] = (offsets[3 * k] * n + offsets[3 * k + 1]) * n + offsets[3 * k + 2];
  }
  bool* mask = out.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "find_peaks_cpu", [&] {
    const scalar_t* data = f.data_ptr<scalar_t>();
    at::parallel_for(0, cubes * n, 1, [&](int64_t p0, int64_t p1) {
      std::vector<uint8_t> face(n);
      const int64_t plane = n * n;
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p / n, x = p % n;
        const scalar_t* cube = data + c * n * n * n;
        bool* cmask = mask + c * n * n * n;
        const bool x_inside = x >= radius && x < n - radius;
        for (int64_t y = 0; y < n; ++y) {
          const bool row_inside = x_inside && y >= radius && y < n - radius;
          const int64_t row = (x * n + y) * n;
          if (row_inside) {
            const scalar_t* c = cube + row;
            uint8_t* fp = face.data();
            for (int64_t z = radius; z < n - radius; ++z) {
              const scalar_t v = c[z];
              fp[z] = (v > c[z - 1]) & (v > c[z + 1]) & (v > c[z - n]) & (v > c[z + n]) &
                      (v > c[z - plane]) & (v > c[z + plane]);
            }
            for (int64_t z = 0; z < n; ++z) {
              if (z >= radius && z < n - radius) {
                cmask[row + z] = fp[z] && is_peak_interior(cube, row + z, linear.data(), count);
              } else {
                cmask[row + z] = is_peak_checked(cube, n, x, y, z, offsets.data(), count, periodic);
              }
            }
            continue;
          }
          for (int64_t z = 0; z < n; ++z) {
            const bool inside = row_inside && z >= radius && z < n - radius;
            cmask[row + z] = inside
                ? is_peak_interior(cube, row + z, linear.data(), count)
                : is_peak_checked(cube, n, x, y, z, offsets.data(), count, periodic);
          }
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CPU, m) { m.impl("find_peaks", &lss::find_peaks_cpu); }
