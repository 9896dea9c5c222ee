// CUDA soft_histogram and its backward. Each block builds a float64 histogram of a slice of
// one row in shared memory (when nbins fits), then adds it to a float64 result with atomics;
// larger nbins use global atomics directly. Float64 atomics need sm_60+.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <tuple>
#include <vector>

#include "../common/block_histogram.cuh"
#include "../common/histogram.h"
#include "../common/histogram_checks.h"

namespace lss {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBins = 4096;  // 32 KiB of float64

template <typename scalar_t, bool SHARED>
__global__ void soft_histogram_kernel(const scalar_t* __restrict__ values,
                                      const scalar_t* __restrict__ weights, int64_t length,
                                      SoftBins hb, double* __restrict__ out) {
  const int64_t nbins = hb.nbins;
  extern __shared__ double hist[];
  const int64_t row = blockIdx.y;
  double* target = block_histogram_begin<SHARED>(hist, out + row * nbins, nbins);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; m < length;
       m += stride) {
    const int64_t i = row * length + m;
    SoftBin b;
    if (!soft_bin(static_cast<double>(values[i]), hb, &b)) continue;
    const double w = weight_or_one(weights, i);
    atomicAdd(target + b.j0, w * b.w0);
    if (b.w1 != 0.0) atomicAdd(target + b.j1, w * b.w1);
  }
  block_histogram_end<SHARED>(hist, out + row * nbins, nbins);
}

template <typename scalar_t>
__global__ void soft_histogram_backward_kernel(const scalar_t* __restrict__ grad,
                                               const scalar_t* __restrict__ values,
                                               const scalar_t* __restrict__ weights,
                                               int64_t total, int64_t length, SoftBins hb,
                                               scalar_t* __restrict__ grad_values,
                                               scalar_t* __restrict__ grad_weights) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  soft_bin_backward(static_cast<double>(values[i]), weights, i, grad + (i / length) * hb.nbins,
                    hb, grad_values != nullptr ? grad_values + i : nullptr,
                    grad_weights != nullptr ? grad_weights + i : nullptr);
}

at::Tensor soft_histogram_cuda(const at::Tensor& values, const c10::optional<at::Tensor>& weights,
                               double lo, double hi, int64_t nbins) {
  check_soft_histogram_args(values, weights, lo, hi, nbins, /*count_nan=*/true);
  const c10::cuda::CUDAGuard guard(values.device());
  const int64_t length = values.size(-1);
  const int64_t rows = length == 0 ? values.numel() : values.numel() / length;
  const std::vector<int64_t> out_shape = with_last(values.sizes(), nbins);
  if (rows == 0 || length == 0) return at::zeros(out_shape, values.options());
  TORCH_CHECK(rows <= 65535, "soft_histogram on CUDA supports at most 65535 rows, got ", rows);
  const at::Tensor v = values.contiguous();
  const at::Tensor w = weights_or_undefined(weights);
  at::Tensor acc = at::zeros({rows, nbins}, values.options().dtype(at::kDouble));
  const int64_t blocks_x = std::min<int64_t>((length + kThreads - 1) / kThreads, 1024);
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(rows));
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "soft_histogram_cuda", [&] {
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    if (nbins <= kSharedBins) {
      soft_histogram_kernel<scalar_t, true><<<grid, kThreads, nbins * sizeof(double), stream>>>(
          v.data_ptr<scalar_t>(), wp, length, make_soft_bins(lo, hi, nbins), acc.data_ptr<double>());
    } else {
      soft_histogram_kernel<scalar_t, false><<<grid, kThreads, 0, stream>>>(
          v.data_ptr<scalar_t>(), wp, length, make_soft_bins(lo, hi, nbins), acc.data_ptr<double>());
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return acc.to(values.scalar_type()).reshape(out_shape);
}

std::tuple<at::Tensor, at::Tensor> soft_histogram_backward_cuda(
    const at::Tensor& grad, const at::Tensor& values, const c10::optional<at::Tensor>& weights,
    double lo, double hi, int64_t nbins, std::array<bool, 2> output_mask) {
  check_soft_histogram_backward_args(grad, values, weights, lo, hi, nbins);
  const c10::cuda::CUDAGuard guard(values.device());
  const at::Tensor v = values.contiguous();
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weights_or_undefined(weights);
  // an output not asked for is empty
  const auto output = [&](bool wanted) {
    return wanted ? at::zeros_like(v) : at::empty({0}, v.options());
  };
  at::Tensor grad_values = output(output_mask[0]);
  at::Tensor grad_weights = output(output_mask[1]);
  const int64_t total = v.numel();
  if (total == 0 || !(output_mask[0] || output_mask[1])) return {grad_values, grad_weights};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "soft_histogram_backward_cuda", [&] {
    soft_histogram_backward_kernel<scalar_t><<<(total + kThreads - 1) / kThreads, kThreads, 0,
                                               stream>>>(
        g.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
        w.defined() ? w.data_ptr<scalar_t>() : nullptr, total, v.size(-1),
        make_soft_bins(lo, hi, nbins),
        output_mask[0] ? grad_values.data_ptr<scalar_t>() : nullptr,
        output_mask[1] ? grad_weights.data_ptr<scalar_t>() : nullptr);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {grad_values, grad_weights};
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CUDA, m) {
  m.impl("soft_histogram", &lss::soft_histogram_cuda);
  m.impl("soft_histogram_backward", &lss::soft_histogram_backward_cuda);
}
