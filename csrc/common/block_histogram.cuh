// CUDA: per-block histograms of one row. With SHARED the block accumulates in float64 shared
// memory (nbins doubles, given at launch) and adds the result to the row with one atomic per
// non-empty bin; without it every update goes straight to the row in global memory.
#pragma once

#include <cstdint>

namespace lss {

template <bool SHARED>
__device__ inline double* block_histogram_begin(double* shared, double* out_row, int64_t nbins) {
  if (!SHARED) return out_row;
  for (int64_t j = threadIdx.x; j < nbins; j += blockDim.x) shared[j] = 0.0;
  __syncthreads();
  return shared;
}

template <bool SHARED>
__device__ inline void block_histogram_end(const double* shared, double* out_row, int64_t nbins) {
  if (!SHARED) return;
  __syncthreads();
  for (int64_t j = threadIdx.x; j < nbins; j += blockDim.x) {
    if (shared[j] != 0.0) atomicAdd(out_row + j, shared[j]);
  }
}

}  // namespace lss
