// CPU bin_sum and its backward: the binning of |F(k)|^2 behind power_spectrum.
//   bin_sum(values (..., M), index (M,), weight (M,) or None, nbins) -> (..., nbins)
//     out[..., b] = sum over m with index[m] == b of weight[m] * values[..., m]
//   index[m] = -1 leaves mode m out. Sums are taken in float64 over fixed chunks of M and
//   added in chunk order (the same result for any number of threads).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"

namespace lss {
namespace {

at::Tensor bin_sum_cpu(const at::Tensor& values, const at::Tensor& index,
                       const c10::optional<at::Tensor>& weight, int64_t nbins) {
  LSS_CHECK_FLOATING(values, "values");
  TORCH_CHECK(values.dim() >= 1, "values must have shape (..., M)");
  const int64_t length = values.size(-1);
  check_bin_index(index, weight, values, length, nbins);
  const int64_t rows = length == 0 ? values.numel() : values.numel() / length;
  at::Tensor out = at::zeros(with_last(values.sizes(), nbins), values.options());
  if (rows == 0 || length == 0) return out;
  const at::Tensor v = values.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  const RowChunks rc = row_chunks(rows, length);
  std::vector<double> partial(rows * rc.chunks * nbins, 0.0);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "bin_sum_cpu", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const int64_t* ip = idx.data_ptr<int64_t>();
    at::parallel_for(0, rows * rc.chunks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / rc.chunks, ch = t % rc.chunks;
        const int64_t begin = ch * rc.chunk, end = std::min(length, (ch + 1) * rc.chunk);
        const scalar_t* vrow = vp + row * length;
        double* hist = partial.data() + t * nbins;
        for (int64_t m = begin; m < end; ++m) {
          const int64_t b = ip[m];
          if (b < 0) continue;
          hist[b] += (wp != nullptr ? static_cast<double>(wp[m]) : 1.0) * static_cast<double>(vrow[m]);
        }
      }
    });
    scalar_t* op = out.data_ptr<scalar_t>();
    for (int64_t row = 0; row < rows; ++row) {
      for (int64_t j = 0; j < nbins; ++j) {
        double sum = 0.0;
        for (int64_t ch = 0; ch < rc.chunks; ++ch) sum += partial[(row * rc.chunks + ch) * nbins + j];
        op[row * nbins + j] = static_cast<scalar_t>(sum);
      }
    }
  });
  return out;
}

// d out[..., b] / d values[..., m] = weight[m] [index[m] == b]: a gather.
at::Tensor bin_sum_backward_cpu(const at::Tensor& grad, const at::Tensor& index,
                                const c10::optional<at::Tensor>& weight, int64_t length) {
  LSS_CHECK_FLOATING(grad, "grad");
  TORCH_CHECK(grad.dim() >= 1, "grad must have shape (..., nbins)");
  const int64_t nbins = grad.size(-1);
  check_bin_index(index, weight, grad, length, nbins);
  at::Tensor out = at::zeros(with_last(grad.sizes(), length), grad.options());
  const int64_t rows = nbins == 0 ? 0 : grad.numel() / nbins;
  if (rows == 0 || length == 0) return out;
  const at::Tensor g = grad.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "bin_sum_backward_cpu", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const int64_t* ip = idx.data_ptr<int64_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows * length, 1 << 15, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t row = i / length, m = i % length, b = ip[m];
        if (b < 0) continue;
        op[i] = static_cast<scalar_t>((wp != nullptr ? static_cast<double>(wp[m]) : 1.0) *
                                      static_cast<double>(gp[row * nbins + b]));
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CPU, m) {
  m.impl("bin_sum", &lss::bin_sum_cpu);
  m.impl("bin_sum_backward", &lss::bin_sum_backward_cpu);
}
