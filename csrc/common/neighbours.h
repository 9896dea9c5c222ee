// Host-side: the neighbour offsets of a (2r+1)^3 cube, nearest first (see peaks.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lss {

inline std::vector<int32_t> neighbour_offsets(int64_t radius) {
  struct Off { int32_t d2, x, y, z; };
  std::vector<Off> all;
  const int32_t r = static_cast<int32_t>(radius);
  for (int32_t x = -r; x <= r; ++x)
    for (int32_t y = -r; y <= r; ++y)
      for (int32_t z = -r; z <= r; ++z)
        if (x != 0 || y != 0 || z != 0) all.push_back({x * x + y * y + z * z, x, y, z});
  std::stable_sort(all.begin(), all.end(), [](const Off& a, const Off& b) { return a.d2 < b.d2; });
  std::vector<int32_t> flat;
  flat.reserve(3 * all.size());
  for (const Off& o : all) {
    flat.push_back(o.x);
    flat.push_back(o.y);
    flat.push_back(o.z);
  }
  return flat;
}

}  // namespace lss
