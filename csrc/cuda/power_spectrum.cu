// CUDA bin_power (the binning of |F(k)|^2, maths in csrc/common/power_spectrum.h) and its backward.
// Blocks accumulate a float64 histogram of a slice of one row in shared memory, then add it to
// the result with atomics (float64 atomics need sm_60+).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/block_histogram.cuh"
#include "../common/power_spectrum.h"
#include "../common/power_spectrum_checks.h"

namespace lss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBins = 4096;

template <typename scalar_t, bool SHARED>
__global__ void bin_power_kernel(const scalar_t* __restrict__ spectrum,
                                 const int32_t* __restrict__ index,
                                 const scalar_t* __restrict__ weight, int64_t length,
                                 int64_t nbins, double* __restrict__ out) {
  extern __shared__ double hist[];
  const int64_t row = blockIdx.y;
  double* target = block_histogram_begin<SHARED>(hist, out + row * nbins, nbins);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < length;
       m += stride) {
    const int64_t b = index[m];
    if (!in_bins(b, nbins)) continue;
    const int64_t i = row * length + m;
    atomicAdd(target + b, weighted_power(spectrum + 2 * i, weight_or_one(weight, m)));
  }
  block_histogram_end<SHARED>(hist, out + row * nbins, nbins);
}

template <typename scalar_t>
__global__ void bin_power_backward_kernel(const scalar_t* __restrict__ grad,
                                          const scalar_t* __restrict__ spectrum,
                                          const int32_t* __restrict__ index,
                                          const scalar_t* __restrict__ weight, int64_t total,
                                          int64_t length, int64_t nbins, scalar_t* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int64_t m = i % length, b = index[m];
  if (!in_bins(b, nbins)) return;
  weighted_power_backward(spectrum + 2 * i, weight_or_one(weight, m),
                          static_cast<double>(grad[(i / length) * nbins + b]), out + 2 * i);
}

at::Tensor bin_power_cuda(const at::Tensor& spectrum, const at::Tensor& index,
                          const c10::optional<at::Tensor>& weight, int64_t nbins) {
  const int64_t length = check_bin_power_args(spectrum, index, weight, nbins);
  const c10::cuda::CUDAGuard guard(spectrum.device());
  std::vector<int64_t> shape(spectrum.sizes().begin(), spectrum.sizes().end() - 1);
  shape.back() = nbins;
  const int64_t rows = length == 0 ? 0 : spectrum.numel() / (2 * length);
  if (rows == 0) return at::zeros(shape, spectrum.options());
  TORCH_CHECK(rows <= 65535, "bin_power on CUDA supports at most 65535 rows, got ", rows);
  const at::Tensor s = spectrum.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  at::Tensor acc = at::zeros({rows, nbins}, spectrum.options().dtype(at::kDouble));
  const int64_t blocks_x = std::min<int64_t>((length + kThreads - 1) / kThreads, 1024);
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(rows));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "bin_power_cuda", [&] {
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    if (nbins <= kSharedBins) {
      bin_power_kernel<scalar_t, true><<<grid, kThreads, nbins * sizeof(double), stream>>>(
          s.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), wp, length, nbins, acc.data_ptr<double>());
    } else {
      bin_power_kernel<scalar_t, false><<<grid, kThreads, 0, stream>>>(
          s.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(), wp, length, nbins, acc.data_ptr<double>());
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return acc.to(spectrum.scalar_type()).reshape(shape);
}

at::Tensor bin_power_backward_cuda(const at::Tensor& grad, const at::Tensor& spectrum,
                                   const at::Tensor& index, const c10::optional<at::Tensor>& weight) {
  const int64_t length = check_bin_power_backward_args(grad, spectrum, index, weight);
  const int64_t nbins = grad.size(-1);
  const c10::cuda::CUDAGuard guard(spectrum.device());
  at::Tensor out = at::zeros_like(spectrum, at::MemoryFormat::Contiguous);
  const int64_t total = length == 0 ? 0 : spectrum.numel() / 2;
  if (total == 0) return out;
  const at::Tensor g = grad.contiguous();
  const at::Tensor s = spectrum.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "bin_power_backward_cuda", [&] {
    bin_power_backward_kernel<scalar_t><<<(total + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
        g.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(), idx.data_ptr<int32_t>(),
        w.defined() ? w.data_ptr<scalar_t>() : nullptr, total, length, nbins, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CUDA, m) {
  m.impl("bin_power", &lss::bin_power_cuda);
  m.impl("bin_power_backward", &lss::bin_power_backward_cuda);
}
