// CPU find_peaks in two stages.
//  1. A separable running maximum over the (2r+1)^3 neighbourhood, self included (z, then y
//     within a plane, then x over a ring of 2r+1 such planes): branch-free loops the compiler
//     vectorises, about 6r max operations per voxel. A strict peak equals that maximum, so
//     only voxels with v == max (about 1 in (2r+1)^3 for a random field, plus ties) go on.
//  2. Those candidates are the maximum of their window, so each is a strict peak unless
//     another voxel of the window equals it: a test on the running maxima already at hand
//     (2r other planes' square maxima, 2r rows' z-window maxima, 2r z-neighbours: 6r
//     comparisons instead of (2r+1)^3 - 1, which matters on rough fields, where there are
//     many candidates). Where a plane of the window holds a NaN (the maxima are then not
//     exact), the full test of csrc/common/peaks.h (linear offsets inside, the wrapped or
//     cropped test near the faces), which also rejects NaN neighbours.
// max(a, b) is written a < b ? b : a: with a NaN anywhere the maximum may or may not be NaN,
// but a true peak has no NaN in its neighbourhood, so it always survives stage 1, and stage 2
// decides. One task per (cube, x-plane) range; each task keeps its own planes.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#include <cstring>
#include <type_traits>
#include <limits>
#include <vector>

#include "../common/neighbours.h"
#include "../common/peaks.h"
#include "../common/peaks_checks.h"

namespace lss {
namespace {

// The index of i + d along an axis of n cells: wrapped when periodic; false when it falls
// outside an open cube (no neighbour there).
inline bool neighbour_index(int64_t i, int64_t d, int64_t n, bool periodic, int64_t* out) {
  int64_t j = i + d;
  if (j < 0 || j >= n) {
    if (!periodic) return false;
    j = (j + n) % n;
  }
  *out = j;
  return true;
}

constexpr int64_t kScan = 32;  // voxels tested for candidates at a time

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
    // 1 for a NaN, else 0, from the bits (an integer test, so the copy loop vectorises)
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
    auto nan_bit = [](T v) {
      const Bits inf = static_cast<Bits>(sizeof(T) == 4 ? 0x7F800000ull : 0x7FF0000000000000ull);
      Bits b;
      std::memcpy(&b, &v, sizeof b);
      return static_cast<Bits>(inf - (b & (~Bits{0} >> 1))) >> (8 * sizeof(T) - 1);
    };
    at::parallel_for(0, cubes * n, 1, [&](int64_t p0, int64_t p1) {
      // uninitialised: every element is written before it is read (ring slots through
      // ring_key), and zeroing them cost as much as a plane pass per task
      std::unique_ptr<T[]> padded_buf(new T[n + 2 * radius]), ring_buf(new T[width * plane]),
          ring_z_buf(new T[width * plane]), m_buf(new T[plane]);
      T* padded = padded_buf.get();
      T* ring = ring_buf.get();
      T* ring_z = ring_z_buf.get();
      T* m = m_buf.get();
      std::vector<int64_t> ring_key(width, -1);
      std::vector<char> ring_nan(width, 0);
      // the running maximum over the 2r+1 z-neighbours (zrow) and then over the (2r+1)^2
      // square (dst) around each cell of one plane; returns whether the plane holds a NaN
      auto square_max = [&](const T* src, T* zrow, T* dst) {
        Bits nan = 0;
        for (int64_t y = 0; y < n; ++y) {
          const T* row = src + y * n;
          for (int64_t z = 0; z < n; ++z) {
            padded[radius + z] = row[z];
            nan |= nan_bit(row[z]);
          }
          for (int64_t k = 0; k < radius; ++k) {
            padded[k] = periodic ? row[n - radius + k] : lowest;
            padded[radius + n + k] = periodic ? row[k] : lowest;
          }
          T* out_row = zrow + y * n;
          for (int64_t z = 0; z < n; ++z) out_row[z] = padded[z];
          for (int64_t k = 1; k < width; ++k)
            for (int64_t z = 0; z < n; ++z) out_row[z] = vmax(out_row[z], padded[z + k]);
        }
        for (int64_t y = 0; y < n; ++y) {
          T* out_row = dst + y * n;
          for (int64_t z = 0; z < n; ++z) out_row[z] = zrow[y * n + z];
          for (int64_t dy = -radius; dy <= radius; ++dy) {
            int64_t yy;
            if (dy == 0 || !neighbour_index(y, dy, n, periodic, &yy)) continue;
            const T* other = zrow + yy * n;
            for (int64_t z = 0; z < n; ++z) out_row[z] = vmax(out_row[z], other[z]);
          }
        }
        return nan != 0;
      };
      // the square maxima of the other planes of the window: at most 2r of them
      const T* others[2 * kMaxPeakRadius];
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t c = p / n, x = p % n;
        const T* cube = data + c * n * plane;
        bool* cmask = mask + c * n * plane;
        bool first = true, any_nan = false;
        const T* own_z = nullptr;
        int64_t count_others = 0;
        for (int64_t dx = -radius; dx <= radius; ++dx) {
          int64_t xs;
          if (!neighbour_index(x, dx, n, periodic, &xs)) continue;
          // slot by the unwrapped index: the 2r+1 planes of a window never share a slot
          const int64_t slot = ((x + dx) % width + width) % width;
          T* cached = ring + slot * plane;
          if (ring_key[slot] != c * n + xs) {
            ring_nan[slot] = square_max(cube + xs * plane, ring_z + slot * plane, cached);
            ring_key[slot] = c * n + xs;
          }
          any_nan |= ring_nan[slot] != 0;
          if (dx == 0) {
            own_z = ring_z + slot * plane;
          } else {
            others[count_others++] = cached;
          }
          if (first) {
            std::copy(cached, cached + plane, m);
            first = false;
          } else {
            for (int64_t i = 0; i < plane; ++i) m[i] = vmax(m[i], cached[i]);
          }
        }
        const bool fast = !any_nan;
        const bool x_inside = x >= radius && x < n - radius;
        const T* values = cube + x * plane;
        for (int64_t i = 0; i < plane; ++i) {
          // skip blocks without a candidate in one vectorised pass (== is a quiet compare)
          if (i % kScan == 0 && i + kScan <= plane) {
            int any = 0;
            for (int64_t k = i; k < i + kScan; ++k) any |= values[k] == m[k];
            if (!any) {
              i += kScan - 1;
              continue;
            }
          }
          const T v = values[i];
          if (!(v == m[i])) continue;  // below the maximum (or NaN): not a peak
          const int64_t y = i / n, z = i % n;
          if (fast) {
            // v is the window's maximum: it is a strict peak unless another voxel equals it
            // (no NaN in these planes, so the maxima above are exact). The other planes:
            // their square maxima; this plane: the z-window maxima of the other rows, then
            // this row's own z-neighbours.
            bool peak = true;
            for (int64_t k = 0; k < count_others && peak; ++k) peak = others[k][i] < v;
            for (int64_t dy = -radius; dy <= radius && peak; ++dy) {
              int64_t yy;
              if (dy == 0 || !neighbour_index(y, dy, n, periodic, &yy)) continue;
              peak = own_z[yy * n + z] < v;
            }
            for (int64_t dz = -radius; dz <= radius && peak; ++dz) {
              int64_t zz;
              if (dz == 0 || !neighbour_index(z, dz, n, periodic, &zz)) continue;
              peak = values[y * n + zz] < v;
            }
            cmask[x * plane + i] = peak;
            continue;
          }
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
