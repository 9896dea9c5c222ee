// CUDA bin_sum (the binning of |F(k)|^2) and its backward gather. Blocks accumulate a float64
// histogram of a slice of one row in shared memory, then add it to the result with atomics.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/checks.h"

namespace lss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBins = 4096;

template <typename scalar_t, bool SHARED>
__global__ void bin_sum_kernel(const scalar_t* __restrict__ values, const int64_t* __restrict__ index,
                               const scalar_t* __restrict__ weight, int64_t length, int64_t nbins,
                               double* __restrict__ out) {
  extern __shared__ double hist[];
  const int64_t row = blockIdx.y;
  double* target = SHARED ? hist : out + row * nbins;
  if (SHARED) {
    for (int64_t j = threadIdx.x; j < nbins; j += blockDim.x) hist[j] = 0.0;
    __syncthreads();
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < length;
       m += stride) {
    const int64_t b = index[m];
    if (b < 0) continue;
    const double w = weight != nullptr ? static_cast<double>(weight[m]) : 1.0;
    atomicAdd(target + b, w * static_cast<double>(values[row * length + m]));
  }
  if (SHARED) {
    __syncthreads();
    for (int64_t j = threadIdx.x; j < nbins; j += blockDim.x) {
      if (hist[j] != 0.0) atomicAdd(out + row * nbins + j, hist[j]);
    }
  }
}

template <typename scalar_t>
__global__ void bin_sum_backward_kernel(const scalar_t* __restrict__ grad,
                                        const int64_t* __restrict__ index,
                                        const scalar_t* __restrict__ weight, int64_t total,
                                        int64_t length, int64_t nbins, scalar_t* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t m = i % length, b = index[m];
  if (b < 0) return;
  const double w = weight != nullptr ? static_cast<double>(weight[m]) : 1.0;
  out[i] = static_cast<scalar_t>(w * static_cast<double>(grad[(i / length) * nbins + b]));
}

at::Tensor bin_sum_cuda(const at::Tensor& values, const at::Tensor& index,
                        const c10::optional<at::Tensor>& weight, int64_t nbins) {
  LSS_CHECK_FLOATING(values, "values");
  TORCH_CHECK(values.dim() >= 1, "values must have shape (..., M)");
  const int64_t length = values.size(-1);
  check_bin_index(index, weight, values, length, nbins);
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t rows = length == 0 ? values.numel() : values.numel() / length;
  const std::vector<int64_t> out_shape = with_last(values.sizes(), nbins);
  if (rows == 0 || length == 0) return at::zeros(out_shape, values.options());
  TORCH_CHECK(rows <= 65535, "bin_sum on CUDA supports at most 65535 rows, got ", rows);
  const at::Tensor v = values.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  at::Tensor acc = at::zeros({rows, nbins}, values.options().dtype(at::kDouble));
  const int64_t blocks_x = std::min<int64_t>((length + kThreads - 1) / kThreads, 1024);
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(rows));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "bin_sum_cuda", [&] {
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    if (nbins <= kSharedBins) {
      bin_sum_kernel<scalar_t, true><<<grid, kThreads, nbins * sizeof(double), stream>>>(
          v.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), wp, length, nbins, acc.data_ptr<double>());
    } else {
      bin_sum_kernel<scalar_t, false><<<grid, kThreads, 0, stream>>>(
          v.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), wp, length, nbins, acc.data_ptr<double>());
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return acc.to(values.scalar_type()).reshape(out_shape);
}

at::Tensor bin_sum_backward_cuda(const at::Tensor& grad, const at::Tensor& index,
                                 const c10::optional<at::Tensor>& weight, int64_t length) {
  LSS_CHECK_FLOATING(grad, "grad");
  TORCH_CHECK(grad.dim() >= 1, "grad must have shape (..., nbins)");
  const int64_t nbins = grad.size(-1);
  check_bin_index(index, weight, grad, length, nbins);
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor out = at::zeros(with_last(grad.sizes(), length), grad.options());
  const int64_t total = out.numel();
  if (total == 0) return out;
  const at::Tensor g = grad.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "bin_sum_backward_cuda", [&] {
    bin_sum_backward_kernel<scalar_t><<<(total + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
        w.defined() ? w.data_ptr<scalar_t>() : nullptr, total, length, nbins,
        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CUDA, m) {
  m.impl("bin_sum", &lss::bin_sum_cuda);
  m.impl("bin_sum_backward", &lss::bin_sum_backward_cuda);
}
