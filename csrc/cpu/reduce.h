// CPU: histograms of long rows (soft_histogram, bin_power), parallel and the same for any
// number of threads. Each row of (..., M) is cut into fixed chunks; each chunk's partial sums
// (float64) are kept apart and added in chunk order at the end.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lss {

struct RowChunks {
  int64_t rows, length, chunk, chunks;
};

inline RowChunks row_chunks(int64_t rows, int64_t length) {
  const int64_t chunk = std::max<int64_t>(int64_t{1} << 15, (length + 255) / 256);
  const int64_t chunks = length == 0 ? 0 : (length + chunk - 1) / chunk;
  return RowChunks{rows, length, chunk, chunks};
}

// out[row, j] = sum over chunks, in chunk order, of partial[row, chunk, j].
template <typename scalar_t>
inline void reduce_row_chunks(const std::vector<double>& partial, const RowChunks& rc,
                              int64_t nbins, scalar_t* out) {
  at::parallel_for(0, rc.rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      for (int64_t j = 0; j < nbins; ++j) {
        double sum = 0.0;
        for (int64_t ch = 0; ch < rc.chunks; ++ch) sum += partial[(row * rc.chunks + ch) * nbins + j];
        out[row * nbins + j] = static_cast<scalar_t>(sum);
      }
    }
  });
}

}  // namespace lss
