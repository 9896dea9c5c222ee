// CPU bin_power and its backward: the binning of |F(k)|^2 behind power_spectrum (maths in
// csrc/common/power_spectrum.h). Reading the complex spectrum directly saves materialising
// |F|^2. Sums are taken in float64 over fixed chunks of M, added in chunk order
// (csrc/cpu/reduce.h: the same result for any number of threads), with kLanes interleaved
// sub-histograms so that consecutive modes of one bin do not chain through memory.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/power_spectrum.h"
#include "../common/power_spectrum_checks.h"
#include "reduce.h"

namespace lss {
namespace {

constexpr int64_t kLanes = 4;

at::Tensor bin_power_cpu(const at::Tensor& spectrum, const at::Tensor& index,
                         const c10::optional<at::Tensor>& weight, int64_t nbins) {
  const int64_t length = check_bin_power_args(spectrum, index, weight, nbins);
  std::vector<int64_t> shape(spectrum.sizes().begin(), spectrum.sizes().end() - 1);
  shape.back() = nbins;
  at::Tensor out = at::zeros(shape, spectrum.options());
  const int64_t rows = length == 0 ? 0 : spectrum.numel() / (2 * length);
  if (rows == 0) return out;
  const at::Tensor s = spectrum.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  const RowChunks rc = row_chunks(rows, length);
  std::vector<double> partial(rows * rc.chunks * nbins, 0.0);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "bin_power_cpu", [&] {
    const scalar_t* sp = s.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const int32_t* ip = idx.data_ptr<int32_t>();
    at::parallel_for(0, rows * rc.chunks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<double> lanes(kLanes * nbins);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / rc.chunks, ch = t % rc.chunks;
        const int64_t begin = ch * rc.chunk, end = std::min(length, (ch + 1) * rc.chunk);
        const scalar_t* srow = sp + 2 * row * length;
        std::fill(lanes.begin(), lanes.end(), 0.0);
        for (int64_t m = begin; m < end; ++m) {
          const int64_t b = ip[m];
          if (!in_bins(b, nbins)) continue;
          lanes[(m % kLanes) * nbins + b] += weighted_power(srow + 2 * m, weight_or_one(wp, m));
        }
        double* hist = partial.data() + t * nbins;
        for (int64_t l = 0; l < kLanes; ++l)
          for (int64_t j = 0; j < nbins; ++j) hist[j] += lanes[l * nbins + j];
      }
    });
    reduce_row_chunks(partial, rc, nbins, out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor bin_power_backward_cpu(const at::Tensor& grad, const at::Tensor& spectrum,
                                  const at::Tensor& index, const c10::optional<at::Tensor>& weight) {
  const int64_t length = check_bin_power_backward_args(grad, spectrum, index, weight);
  const int64_t nbins = grad.size(-1);
  at::Tensor out = at::zeros_like(spectrum, at::MemoryFormat::Contiguous);
  const int64_t rows = length == 0 ? 0 : spectrum.numel() / (2 * length);
  if (rows == 0) return out;
  const at::Tensor g = grad.contiguous();
  const at::Tensor s = spectrum.contiguous();
  const at::Tensor idx = index.contiguous();
  const at::Tensor w = weights_or_undefined(weight);
  AT_DISPATCH_FLOATING_TYPES(s.scalar_type(), "bin_power_backward_cpu", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* sp = s.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const int32_t* ip = idx.data_ptr<int32_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows * length, 1 << 15, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t row = i / length, m = i % length, b = ip[m];
        if (!in_bins(b, nbins)) continue;
        weighted_power_backward(sp + 2 * i, weight_or_one(wp, m),
                                static_cast<double>(gp[row * nbins + b]), op + 2 * i);
      }
    });
  });
  return out;
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CPU, m) {
  m.impl("bin_power", &lss::bin_power_cpu);
  m.impl("bin_power_backward", &lss::bin_power_backward_cpu);
}
