// CUDA paint / readout: one thread per particle over the maths of csrc/common/paint.h.
// Painting uses atomicAdd (float64 atomics need sm_60+), so the summation order,
// and the last bits of a float32 grid, may vary from run to run.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/paint.h"
#include "../common/paint_checks.h"

namespace lss {
namespace {

constexpr int kThreads = 256;

inline int64_t blocks_for(int64_t num) { return (num + kThreads - 1) / kThreads; }

template <int ORDER, typename scalar_t>
__global__ void paint_cuda_kernel(const scalar_t* __restrict__ pos, const scalar_t* __restrict__ wts,
                                  int64_t num, scalar_t* __restrict__ grid, GridSpec g) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= num) return;
  const auto sx = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 0]), g);
  const auto sy = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 1]), g);
  const auto sz = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 2]), g);
  const double w = weight_or_one(wts, p);
  for_each_cell<ORDER>(sx, sy, sz, g.n, [&](int64_t idx, double wc) {
    atomicAdd(grid + idx, static_cast<scalar_t>(w * wc));
  });
}

template <int ORDER, bool GRAD, typename scalar_t>
__global__ void readout_cuda_kernel(const scalar_t* __restrict__ field,
                                    const scalar_t* __restrict__ pos,
                                    const scalar_t* __restrict__ wts, int64_t num, GridSpec g,
                                    scalar_t* __restrict__ out) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= num) return;
  readout_particle<ORDER, GRAD>(field, pos, wts, p, g, out);
}

// paint_into's body, on checked arguments.
void paint_checked(at::Tensor& grid, const at::Tensor& positions,
                   const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  const c10::cuda::CUDAGuard guard(positions.device());
  const at::Tensor pos = positions.contiguous();
  const at::Tensor wts = weights_or_undefined(weights);
  const int64_t num = pos.size(0);
  if (num == 0) return;
  const int64_t n = grid.size(0);
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "paint_cuda", [&] {
    const scalar_t* w = wts.defined() ? wts.data_ptr<scalar_t>() : nullptr;
    LSS_DISPATCH_ORDER(order, [&] {
      paint_cuda_kernel<ORDER><<<blocks_for(num), kThreads, 0, stream>>>(
          pos.data_ptr<scalar_t>(), w, num, grid.data_ptr<scalar_t>(),
          make_grid_spec(box_size, n));
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void paint_into_cuda(at::Tensor grid, const at::Tensor& positions,
                     const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  check_paint_into_args(grid, positions, weights, box_size, order);
  paint_checked(grid, positions, weights, box_size, order);
}

at::Tensor paint_cuda(const at::Tensor& positions, const c10::optional<at::Tensor>& weights,
                      int64_t n, double box_size, int64_t order) {
  check_paint_args(positions, weights, n, box_size, order);
  at::Tensor grid = at::zeros({n, n, n}, positions.options());
  paint_checked(grid, positions, weights, box_size, order);
  return grid;
}

template <bool GRAD>
at::Tensor readout_impl(const at::Tensor& field, const at::Tensor& positions,
                        const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  check_readout_args(field, positions, weights, box_size, order);
  const c10::cuda::CUDAGuard guard(positions.device());
  const at::Tensor f = field.contiguous();
  const at::Tensor pos = positions.contiguous();
  const at::Tensor wts = weights_or_undefined(weights);
  const int64_t num = pos.size(0);
  at::Tensor out = GRAD ? at::empty({num, 3}, pos.options()) : at::empty({num}, pos.options());
  if (num == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "readout_cuda", [&] {
    const scalar_t* w = wts.defined() ? wts.data_ptr<scalar_t>() : nullptr;
    LSS_DISPATCH_ORDER(order, [&] {
      readout_cuda_kernel<ORDER, GRAD><<<blocks_for(num), kThreads, 0, stream>>>(
          f.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), w, num,
          make_grid_spec(box_size, f.size(0)), out.data_ptr<scalar_t>());
    });
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor readout_cuda(const at::Tensor& field, const at::Tensor& positions, double box_size,
                        int64_t order) {
  return readout_impl<false>(field, positions, c10::nullopt, box_size, order);
}

at::Tensor readout_gradient_cuda(const at::Tensor& field, const at::Tensor& positions,
                                 const c10::optional<at::Tensor>& weights, double box_size,
                                 int64_t order) {
  return readout_impl<true>(field, positions, weights, box_size, order);
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CUDA, m) {
  m.impl("paint", &lss::paint_cuda);
  m.impl("paint_into", &lss::paint_into_cuda);
  m.impl("readout", &lss::readout_cuda);
  m.impl("readout_gradient", &lss::readout_gradient_cuda);
}
