// Strict local maxima over a (2r+1)^3 neighbourhood: the per-voxel test.
//
// A voxel is a peak when its value is greater than every other value in its neighbourhood.
// Neighbours are visited nearest first (faces, edges, corners, then the next shell): most
// voxels are beaten by one of their six face neighbours, so the test usually ends after a
// comparison or two. Comparisons are written as !(v > w), so a NaN neighbour, or a NaN
// voxel, never yields a peak; ties (plateaus) are never peaks.
//   periodic: neighbours wrap around the cube (requires n >= 2r + 1, checked by the caller)
//   open:     neighbours outside the cube are ignored
#pragma once

#include <cstdint>

#include "hd.h"

namespace lss {

// offsets: K triples (dx, dy, dz), nearest first.
template <typename scalar_t>
LSS_HD inline bool is_peak_checked(const scalar_t* f, int64_t n, int64_t x, int64_t y, int64_t z,
                                   const int32_t* offsets, int64_t count, bool periodic) {
  const scalar_t v = f[(x * n + y) * n + z];
  if (!(v == v)) return false;
  for (int64_t k = 0; k < count; ++k) {
    int64_t xx = x + offsets[3 * k], yy = y + offsets[3 * k + 1], zz = z + offsets[3 * k + 2];
    if (periodic) {
      xx = xx < 0 ? xx + n : (xx >= n ? xx - n : xx);
      yy = yy < 0 ? yy + n : (yy >= n ? yy - n : yy);
      zz = zz < 0 ? zz + n : (zz >= n ? zz - n : zz);
    } else if (xx < 0 || xx >= n || yy < 0 || yy >= n || zz < 0 || zz >= n) {
      continue;
    }
    if (!(v > f[(xx * n + yy) * n + zz])) return false;
  }
  return true;
}

// Interior voxels (all neighbours inside): linear offsets, no bounds logic.
template <typename scalar_t>
LSS_HD inline bool is_peak_interior(const scalar_t* f, int64_t index, const int64_t* linear,
                                    int64_t count) {
  const scalar_t v = f[index];
  if (!(v == v)) return false;
  for (int64_t k = 0; k < count; ++k) {
    if (!(v > f[index + linear[k]])) return false;
  }
  return true;
}

}  // namespace lss
