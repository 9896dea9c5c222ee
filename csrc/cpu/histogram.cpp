// CPU soft_histogram and its backward (maths in csrc/common/histogram.h). Each row of
// (..., M) is cut into fixed chunks whose partial histograms (float64) are added in chunk
// order (csrc/cpu/reduce.h): parallel, and the same result for any number of threads.
// Within a chunk, values go round-robin into kLanes sub-histograms: consecutive values often
// hit the same bin, and one histogram would chain every update on the previous one through
// memory.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common/histogram.h"
#include "../common/histogram_checks.h"
#include "reduce.h"

namespace lss {
namespace {

constexpr int64_t kLanes = 4;

at::Tensor soft_histogram_cpu(const at::Tensor& values, const c10::optional<at::Tensor>& weights,
                              double lo, double hi, int64_t nbins) {
  // NaN values are counted in the kernel's own pass
  check_soft_histogram_args(values, weights, lo, hi, nbins, /*count_nan=*/false);
  const SoftBins hb = make_soft_bins(lo, hi, nbins);
  const int64_t length = values.size(-1);
  const int64_t rows = length == 0 ? values.numel() : values.numel() / length;
  const at::Tensor v = values.contiguous();
  const at::Tensor w = weights_or_undefined(weights);
  at::Tensor out = at::zeros(with_last(values.sizes(), nbins), values.options());
  if (rows == 0 || length == 0) return out;
  const RowChunks rc = row_chunks(rows, length);
  std::vector<double> partial(rows * rc.chunks * nbins, 0.0);
  std::vector<int64_t> nan_count(rows * rc.chunks, 0);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "soft_histogram_cpu", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, rows * rc.chunks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<double> lanes(kLanes * nbins);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / rc.chunks, ch = t % rc.chunks;
        const int64_t begin = row * length + ch * rc.chunk;
        const int64_t end = row * length + std::min(length, (ch + 1) * rc.chunk);
        std::fill(lanes.begin(), lanes.end(), 0.0);
        int64_t nans = 0;
        for (int64_t m = begin; m < end; ++m) {
          const double value = static_cast<double>(vp[m]);
          SoftBin b;
          if (!soft_bin(value, hb, &b)) {
            nans += value != value;
            continue;
          }
          double* hist = lanes.data() + (m % kLanes) * nbins;
          const double weight = weight_or_one(wp, m);
          hist[b.j0] += weight * b.w0;
          hist[b.j1] += weight * b.w1;
        }
        double* hist = partial.data() + t * nbins;
        for (int64_t l = 0; l < kLanes; ++l)
          for (int64_t j = 0; j < nbins; ++j) hist[j] += lanes[l * nbins + j];
        nan_count[t] = nans;
      }
    });
    int64_t nans = 0;
    for (int64_t c : nan_count) nans += c;
    TORCH_CHECK(nans == 0, "values contain ", nans, " NaN entries");
    reduce_row_chunks(partial, rc, nbins, out.data_ptr<scalar_t>());
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> soft_histogram_backward_cpu(
    const at::Tensor& grad, const at::Tensor& values, const c10::optional<at::Tensor>& weights,
    double lo, double hi, int64_t nbins) {
  check_soft_histogram_backward_args(grad, values, weights, lo, hi, nbins);
  const SoftBins hb = make_soft_bins(lo, hi, nbins);
  const int64_t length = values.size(-1);
  const at::Tensor v = values.contiguous();
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weights_or_undefined(weights);
  at::Tensor grad_values = at::zeros_like(v);
  at::Tensor grad_weights = at::zeros_like(v);
  if (v.numel() == 0) return {grad_values, grad_weights};
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "soft_histogram_backward_cpu", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* gv = grad_values.data_ptr<scalar_t>();
    scalar_t* gw = grad_weights.data_ptr<scalar_t>();
    at::parallel_for(0, v.numel(), 1 << 14, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        soft_bin_backward(static_cast<double>(vp[m]), wp, m, gp + (m / length) * nbins, hb,
                          gv + m, gw + m);
      }
    });
  });
  return {grad_values, grad_weights};
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CPU, m) {
  m.impl("soft_histogram", &lss::soft_histogram_cpu);
  m.impl("soft_histogram_backward", &lss::soft_histogram_backward_cpu);
}
