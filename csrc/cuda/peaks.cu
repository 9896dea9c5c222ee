// CUDA find_peaks: one thread per voxel over the test of csrc/common/peaks.h.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "../common/neighbours.h"
#include "../common/peaks.h"
#include "../common/peaks_checks.h"

namespace lss {
namespace {

template <typename scalar_t>
__global__ void find_peaks_kernel(const scalar_t* __restrict__ field, bool* __restrict__ mask,
                                  int64_t total, int64_t n, const int32_t* __restrict__ offsets,
                                  int64_t count, bool periodic) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t cells = n * n * n;
  const int64_t c = i / cells, r = i % cells;
  const int64_t x = r / (n * n), y = (r / n) % n, z = r % n;
  mask[i] = is_peak_checked(field + c * cells, n, x, y, z, offsets, count, periodic);
}

at::Tensor find_peaks_cuda(const at::Tensor& field, int64_t radius, bool periodic) {
  const int64_t n = check_find_peaks_args(field, radius, periodic);
  const c10::cuda::CUDAGuard guard(field.device());
  const at::Tensor f = field.contiguous();
  at::Tensor out = at::zeros(field.sizes(), field.options().dtype(at::kBool));
  const int64_t total = f.numel();
  if (total == 0) return out;
  const std::vector<int32_t> host = neighbour_offsets(radius);
  const at::Tensor offsets =
      at::tensor(host, at::TensorOptions().dtype(at::kInt)).to(field.device(), /*non_blocking=*/false);
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(f.scalar_type(), "find_peaks_cuda", [&] {
    find_peaks_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        f.data_ptr<scalar_t>(), out.data_ptr<bool>(), total, n, offsets.data_ptr<int32_t>(),
        static_cast<int64_t>(host.size() / 3), periodic);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CUDA, m) { m.impl("find_peaks", &lss::find_peaks_cuda); }
