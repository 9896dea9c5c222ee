// CPU find_peaks in two stages.
//  1. A separable running maximum over the (2r+1)^3 neighbourhood, self included (z, then y
//     within a plane, then x over a ring of 2r+1 such planes): branch-free loops the compiler
//     vectorises, about 6r max operations per voxel. A strict peak equals that maximum, so
//     only voxels with v == max (about 1 in (2r+1)^3 for a random field, plus ties) go on.
//  2. The exact test of csrc/common/peaks.h on those candidates (linear offsets inside, the
//     wrapped or cropped test near the faces), which also rejects ties and NaN neighbours.
// max(a, b) is written a < b ? b : a: with a NaN anywhere the maximum may or may not be NaN,
// but a true peak has no NaN in its neighbourhood, so it always survives stage 1, and stage 2
// decides. One task per (cube, x-plane) range; each task keeps its own planes.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../common/neighbours.h"
#include "../common/peaks.h"
#include "../common/peaks_checks.h"

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
  const int64_t plane = n * n, width = 2 * radius + 1;
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "find_peaks_cpu", [&] {
    using T = scalar_t;
    const T* data = f.data_ptr<T>();
    const T lowest = -std::numeric_limits<T>::infinity();
    auto vmax = [](T a, T b) { return a < b ? b : a; };
    at::parallel_for(0, cubes * n, 1, [&](int64_t p0, int64_t p1) {
      std::vector<T> padded(n + 2 * radius), zmax(plane), ring(width * plane), m(plane);
      std::vector<int64_t> ring_key(width, -1);
      // the running maximum over the (2r+1)^2 square around each cell of one plane
      auto square_max = [&](const T* src, T* dst) {
        for (int64_t y = 0; y < n; ++y) {
          const T* row = src + y * n;
          for (int64_t i = 0; i < n + 2 * radius; ++i) {
            const int64_t z = i - radius;
            padded[i] = (z >= 0 && z < n) ? row[z] : (periodic ? row[(z + n) % n] : lowest);
          }
          T* out_row = zmax.data() + y * n;
          for (int64_t z = 0; z < n; ++z) out_row[z] = padded[z];
          for (int64_t k = 1; k < width; ++k)
            for (int64_t z = 0; z < n; ++z) out_row[z] = vmax(out_row[z], padded[z + k]);
        }
        for (int64_t y = 0; y < n; ++y) {
          T* out_row = dst + y * n;
          for (int64_t z = 0; z < n; ++z) out_row[z] = zmax[y * n + z];
          for (int64_t dy = -radius; dy <= radius; ++dy) {
            int64_t yy = y + dy;
            if (dy == 0) continue;
            if (yy < 0 || yy >= n) {
              if (!periodic) continue;
              yy = (yy + n) % n;
            }
            const T* other = zmax.data() + yy * n;
            for (int64_t z = 0; z < n; ++z) out_row[z] = vmax(out_row[z], other[z]);
          }
        }
      };
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p / n, x = p % n;
        const T* cube = data + c * n * plane;
        bool* cmask = mask + c * n * plane;
        bool first = true;
        for (int64_t dx = -radius; dx <= radius; ++dx) {
          int64_t xs = x + dx;
          if (xs < 0 || xs >= n) {
            if (!periodic) continue;
            xs = (xs + n) % n;
          }
          // slot by the unwrapped index: the 2r+1 planes of a window never share a slot
          const int64_t slot = ((x + dx) % width + width) % width;
          T* cached = ring.data() + slot * plane;
          if (ring_key[slot] != c * n + xs) {
            square_max(cube + xs * plane, cached);
            ring_key[slot] = c * n + xs;
          }
          if (first) {
            std::copy(cached, cached + plane, m.begin());
            first = false;
          } else {
            for (int64_t i = 0; i < plane; ++i) m[i] = vmax(m[i], cached[i]);
          }
        }
        const bool x_inside = x >= radius && x < n - radius;
        const T* values = cube + x * plane;
        for (int64_t i = 0; i < plane; ++i) {
          if (!(values[i] == m[i])) continue;  // below the maximum (or NaN): not a peak
          const int64_t y = i / n, z = i % n;
          const bool inside = x_inside && y >= radius && y < n - radius && z >= radius &&
                              z < n - radius;
          cmask[x * plane + i] =
              inside ? is_peak_interior(cube, x * plane + i, linear.data(), count)
                     : is_peak_checked(cube, n, x, y, z, offsets.data(), count, periodic);
        }
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CPU, m) { m.impl("find_peaks", &lss::find_peaks_cpu); }
