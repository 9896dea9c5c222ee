// CPU soft_histogram and its backward (maths in csrc/common/histogram.h). Each row of
// (..., M) is cut into fixed chunks whose partial histograms (float64) are added in chunk
// order (csrc/cpu/reduce.h): parallel, and the same result for any number of threads.
// Within a chunk, values go round-robin into kLanes sub-histograms: consecutive values often
// hit the same bin, and one histogram would chain every update on the previous one through
// memory. Values are taken a block at a time: first their bins, shares and in-range flags in
// a loop without branches (float32 arithmetic for float32 values where that is accurate, see
// block_bins_ok, so it vectorises; the range test is exact against the float64 lo and hi),
// then the scatter. The backward goes by the
// same blocks, row by row (no division per value).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "../common/histogram.h"
#include "../common/histogram_checks.h"
#include "reduce.h"

namespace lss {
namespace {

constexpr int64_t kLanes = 4;

constexpr int64_t kBlock = 256;

// The per-call constants in the arithmetic of the values: lo and hi rounded inwards to the
// values' type, so that lo_t <= v <= hi_t exactly when lo <= v <= hi.
template <typename T>
struct BlockBins {
  T lo, hi, inv, top;  // top = nbins - 1
  int32_t last;        // nbins - 2: the first bin of the last pair
  double inv_width, lo_d, top_d;
};

template <typename T>
inline T round_in(double x, bool up) {
  T t = static_cast<T>(x);
  if (up && static_cast<double>(t) < x) t = std::nextafter(t, std::numeric_limits<T>::infinity());
  if (!up && static_cast<double>(t) > x) t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

// Whether the block loop may run in T's arithmetic: always in float64; in float32 for at most
// kMaxFloatBins bins on a range float32 holds comfortably (its bin choice is then wrong only
// within about nbins 2^-21 of a bin centre, and share_of bounds the harm to that distance; a
// row's total stays exact, the two shares being 1 - f and f in float64). Elsewhere the
// float64 loop of csrc/common/histogram.h.
constexpr int64_t kMaxFloatBins = 256;

template <typename T>
inline bool block_bins_ok(const SoftBins& h) {
  if (h.nbins < 2) return false;
  if (sizeof(T) == 8) return true;
  return h.nbins <= kMaxFloatBins && std::fabs(h.lo) < 1e30 && std::fabs(h.hi) < 1e30 &&
         h.inv_width > 1e-30 && h.inv_width < 1e30;
}

template <typename T>
inline BlockBins<T> make_block_bins(const SoftBins& h) {
  return BlockBins<T>{round_in<T>(h.lo, true), round_in<T>(h.hi, false),
                      static_cast<T>(h.inv_width), static_cast<T>(h.nbins - 1),
                      static_cast<int32_t>(h.nbins - 2), h.inv_width, h.lo,
                      static_cast<double>(h.nbins - 1)};
}

// For each value of a block (nbins >= 2): its pair of bins (j, j + 1), whether it is in
// [lo, hi] (0 or 1) and whether it lies strictly between the first and last centres (where the
// shares have a slope). The edges: s <= 0 gives j = 0 (all to bin 0), s >= nbins - 1 gives
// j = nbins - 2 (all to the last bin, see share_of). NaN is out of range.
template <typename T>
inline void block_bins(const T* v, int64_t len, const BlockBins<T>& b, int32_t* j, T* inside,
                       T* interior) {
  for (int64_t k = 0; k < len; ++k) {
    const T x = v[k];
    const T s = (x - b.lo) * b.inv - T(0.5);
    // in this order a NaN s becomes 0 (std::max returns its first argument unless the second
    // is greater), so every j indexes the row, even for values left out
    const T clamped = std::min(b.top, std::max(T(0), s));
    const int32_t i = std::min(static_cast<int32_t>(clamped), b.last);
    j[k] = i;
    inside[k] = static_cast<T>((x >= b.lo) & (x <= b.hi));
    interior[k] = static_cast<T>((s > T(0)) & (s < b.top));
  }
}

// The share of bin j + 1, in float64 from the value itself (the block's float32 pass only
// chose j): exact wherever that j is right, and off by no more than float32's error in s
// within that error of a bin centre, where j may be one off.
template <typename T>
inline double share_of(T x, int32_t j, const BlockBins<T>& b) {
  const double s = std::min(b.top_d, std::max(0.0, (static_cast<double>(x) - b.lo_d) *
                                                       b.inv_width - 0.5));
  return std::min(1.0, std::max(0.0, s - static_cast<double>(j)));
}

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
    const bool blocks = block_bins_ok<scalar_t>(hb);
    const BlockBins<scalar_t> bb = make_block_bins<scalar_t>(hb);
    at::parallel_for(0, rows * rc.chunks, 1, [&](int64_t t0, int64_t t1) {
      std::vector<double> lanes(kLanes * nbins);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / rc.chunks, ch = t % rc.chunks;
        const int64_t begin = row * length + ch * rc.chunk;
        const int64_t end = row * length + std::min(length, (ch + 1) * rc.chunk);
        std::fill(lanes.begin(), lanes.end(), 0.0);
        int64_t nans = 0;
        if (!blocks) {
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
        } else {
          int32_t j[kBlock];
          scalar_t inside[kBlock], interior[kBlock];
          for (int64_t b = begin; b < end; b += kBlock) {
            const int64_t len = std::min(kBlock, end - b);
            block_bins(vp + b, len, bb, j, inside, interior);
            for (int64_t k = 0; k < len; ++k) nans += vp[b + k] != vp[b + k];
            for (int64_t k = 0; k < len; ++k) {
              const int64_t m = b + k;
              double* hist = lanes.data() + (m % kLanes) * nbins + j[k];
              const double w = static_cast<double>(inside[k]) * weight_or_one(wp, m);
              const double share = share_of(vp[m], j[k], bb);
              hist[0] += w * (1.0 - share);
              hist[1] += w * share;
            }
          }
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
  // the block loop below writes every element; the float64 loop only those in range
  const bool blocks = v.scalar_type() == at::kFloat ? block_bins_ok<float>(hb)
                                                    : block_bins_ok<double>(hb);
  at::Tensor grad_values = blocks ? at::empty_like(v) : at::zeros_like(v);
  at::Tensor grad_weights = blocks ? at::empty_like(v) : at::zeros_like(v);
  if (v.numel() == 0) return {grad_values, grad_weights};
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "soft_histogram_backward_cpu", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* gv = grad_values.data_ptr<scalar_t>();
    scalar_t* gw = grad_weights.data_ptr<scalar_t>();
    const int64_t rows = v.numel() / length;
    if (!block_bins_ok<scalar_t>(hb)) {
      at::parallel_for(0, v.numel(), 1 << 14, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
          soft_bin_backward(static_cast<double>(vp[m]), wp, m, gp + (m / length) * nbins, hb,
                            gv + m, gw + m);
        }
      });
      return;
    }
    const BlockBins<scalar_t> bb = make_block_bins<scalar_t>(hb);
    const int64_t blocks_per_row = (length + kBlock - 1) / kBlock;
    at::parallel_for(0, rows * blocks_per_row, 16, [&](int64_t t0, int64_t t1) {
      int32_t j[kBlock];
      scalar_t inside[kBlock], interior[kBlock];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / blocks_per_row, blk = t % blocks_per_row;
        const int64_t b = row * length + blk * kBlock;
        const int64_t len = std::min(kBlock, (row + 1) * length - b);
        const scalar_t* grow = gp + row * nbins;
        block_bins(vp + b, len, bb, j, inside, interior);
        for (int64_t k = 0; k < len; ++k) {
          const int64_t m = b + k;
          const double g0 = static_cast<double>(grow[j[k]]);
          const double g1 = static_cast<double>(grow[j[k] + 1]);
          const double share = share_of(vp[m], j[k], bb);
          const double weight = weight_or_one(wp, m);
          const double slope = interior[k] != scalar_t(0) ? bb.inv_width : 0.0;
          const bool in = inside[k] != scalar_t(0);
          gv[m] = in ? static_cast<scalar_t>(weight * slope * (g1 - g0)) : scalar_t(0);
          gw[m] = in ? static_cast<scalar_t>((1.0 - share) * g0 + share * g1) : scalar_t(0);
        }
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
