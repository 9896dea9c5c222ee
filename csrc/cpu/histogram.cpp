// CPU soft_histogram and its backward (maths in csrc/common/histogram.h). Each row of
// (..., M) is cut into fixed chunks whose partial histograms (float64) are added in chunk
// order (csrc/cpu/reduce.h): parallel, and the same result for any number of threads.
// Within a chunk, values go round-robin into kLanes sub-histograms: consecutive values often
// hit the same bin, and one histogram would chain every update on the previous one through
// memory. Values are taken a block at a time: first, in a loop without branches that
// vectorises, each value's pair of bins and the two amounts it adds to them (the bins in
// float32 arithmetic for float32 values where that is accurate, see block_bins_ok; the range
// test exact against the float64 lo and hi; the shares in float64), then the scatter, the only
// part left to do one value at a time.
// The backward goes by the same blocks, row by row. A value's gradient depends on its pair of
// bins alone (its weight times (g[j + 1] - g[j]) / D), so a table of those per row makes it one
// load per value; the weights' gradient is computed only when asked for (output_mask).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
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

// A value's position s = (x - lo) / D - 1/2 in bin units, in T's arithmetic.
template <typename T>
inline T position(T x, const BlockBins<T>& b) {
  return (x - b.lo) * b.inv - T(0.5);
}

// The first bin j of the pair (j, j + 1) a value at position s falls between (nbins >= 2). The
// edges: s <= 0 gives j = 0 (all to bin 0), s >= nbins - 1 gives j = nbins - 2 (all to the last
// bin, see share_of). In this order a NaN s becomes 0 (std::max returns its first argument
// unless the second is greater), so every j indexes the row, even for values left out.
template <typename T>
inline int32_t pair_of(T s, const BlockBins<T>& b) {
  const T clamped = std::min(b.top, std::max(T(0), s));
  return std::min(static_cast<int32_t>(clamped), b.last);
}

// Whether a value is in [lo, hi]; false for NaN.
template <typename T>
inline bool in_range(T x, const BlockBins<T>& b) {
  return (x >= b.lo) & (x <= b.hi);
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

// The forward's pass over a block: for each value its pair j, j + 1 and what it adds to them,
// a0 = weight (1 - f) and a1 = weight f (0 for a value outside [lo, hi]). Returns the number of
// NaN values. Four loops because gcc (without -ffast-math) vectorises each of them and not
// their fusion: the clamps of the share next to 1 - f become branches (the subtraction may
// trap), and so does a bool cast to T where a select is written.
template <typename T, bool kWeighted>
inline int64_t block_amounts(const T* __restrict__ v, const T* __restrict__ w, int64_t len,
                             const BlockBins<T>& b, int32_t* __restrict__ j,
                             double* __restrict__ a0, double* __restrict__ a1) {
  T inside[kBlock];
  for (int64_t k = 0; k < len; ++k) {
    const T x = v[k];
    j[k] = pair_of(position(x, b), b);
    inside[k] = in_range(x, b) ? T(1) : T(0);
  }
  using Count = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;
  Count nans = 0;
  for (int64_t k = 0; k < len; ++k) nans += v[k] != v[k] ? Count(1) : Count(0);
  for (int64_t k = 0; k < len; ++k) a1[k] = share_of(v[k], j[k], b);
  for (int64_t k = 0; k < len; ++k) {
    // weights are finite (checked), so a value out of range adds exactly 0
    const double weight =
        static_cast<double>(inside[k]) * (kWeighted ? static_cast<double>(w[k]) : 1.0);
    const double share = a1[k];
    a0[k] = weight * (1.0 - share);
    a1[k] = weight * share;
  }
  return nans;
}

// Adds a block's amounts into the lane histograms, value k into lane k % kLanes (unrolled, so
// each lane's offset is a constant).
inline void scatter_block(const int32_t* __restrict__ j, const double* __restrict__ a0,
                          const double* __restrict__ a1, int64_t len, int64_t nbins,
                          double* __restrict__ lanes) {
  int64_t k = 0;
  for (; k + kLanes <= len; k += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      double* hist = lanes + l * nbins + j[k + l];
      hist[0] += a0[k + l];
      hist[1] += a1[k + l];
    }
  }
  for (; k < len; ++k) {
    double* hist = lanes + (k % kLanes) * nbins + j[k];
    hist[0] += a0[k];
    hist[1] += a1[k];
  }
}

// The backward's pass over a block, for the gradient of the values: the entry of its row's
// slope table each value reads, its pair j where it has a slope (strictly between the first
// and last centres, so in [lo, hi]), the table's zero entry nbins - 1 elsewhere (the edges,
// values outside [lo, hi], NaN).
template <typename T>
inline void block_slope_index(const T* __restrict__ v, int64_t len, const BlockBins<T>& b,
                              int32_t* __restrict__ j) {
  for (int64_t k = 0; k < len; ++k) {
    const T x = v[k];
    const T s = position(x, b);
    const bool sloped = in_range(x, b) & (s > T(0)) & (s < b.top);
    j[k] = sloped ? pair_of(s, b) : b.last + 1;
  }
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
          double a0[kBlock], a1[kBlock];
          for (int64_t b = begin; b < end; b += kBlock) {
            const int64_t len = std::min(kBlock, end - b);
            nans += wp != nullptr
                        ? block_amounts<scalar_t, true>(vp + b, wp + b, len, bb, j, a0, a1)
                        : block_amounts<scalar_t, false>(vp + b, nullptr, len, bb, j, a0, a1);
            scatter_block(j, a0, a1, len, nbins, lanes.data());
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
    double lo, double hi, int64_t nbins, std::array<bool, 2> output_mask) {
  check_soft_histogram_backward_args(grad, values, weights, lo, hi, nbins);
  const SoftBins hb = make_soft_bins(lo, hi, nbins);
  const int64_t length = values.size(-1);
  const at::Tensor v = values.contiguous();
  const at::Tensor g = grad.contiguous();
  const at::Tensor w = weights_or_undefined(weights);
  const bool blocks = v.scalar_type() == at::kFloat ? block_bins_ok<float>(hb)
                                                    : block_bins_ok<double>(hb);
  // an output not asked for is empty; the block loops below write every element of the
  // others, the float64 loop only those in range
  const auto output = [&](bool wanted) {
    return !wanted ? at::empty({0}, v.options()) : blocks ? at::empty_like(v) : at::zeros_like(v);
  };
  at::Tensor grad_values = output(output_mask[0]);
  at::Tensor grad_weights = output(output_mask[1]);
  if (v.numel() == 0 || !(output_mask[0] || output_mask[1])) return {grad_values, grad_weights};
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "soft_histogram_backward_cpu", [&] {
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* wp = w.defined() ? w.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* gv = output_mask[0] ? grad_values.data_ptr<scalar_t>() : nullptr;
    scalar_t* gw = output_mask[1] ? grad_weights.data_ptr<scalar_t>() : nullptr;
    const int64_t rows = v.numel() / length;
    if (!blocks) {
      at::parallel_for(0, v.numel(), 1 << 14, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
          soft_bin_backward(static_cast<double>(vp[m]), wp, m, gp + (m / length) * nbins, hb,
                            gv != nullptr ? gv + m : nullptr, gw != nullptr ? gw + m : nullptr);
        }
      });
      return;
    }
    const BlockBins<scalar_t> bb = make_block_bins<scalar_t>(hb);
    // The gradient of a value between centres j and j + 1 is its weight times
    // slope[row, j] = (g[j + 1] - g[j]) / D, the same for all of them; slope[row, nbins - 1] = 0
    // is where every value without a slope looks (block_slope_index).
    std::vector<double> slope(gv != nullptr ? rows * nbins : 0);
    if (gv != nullptr) {
      at::parallel_for(0, rows, 1024, [&](int64_t r0, int64_t r1) {
        for (int64_t row = r0; row < r1; ++row) {
          const scalar_t* grow = gp + row * nbins;
          double* srow = slope.data() + row * nbins;
          for (int64_t j = 0; j + 1 < nbins; ++j) {
            srow[j] = hb.inv_width *
                      (static_cast<double>(grow[j + 1]) - static_cast<double>(grow[j]));
          }
          srow[nbins - 1] = 0.0;
        }
      });
    }
    const int64_t blocks_per_row = (length + kBlock - 1) / kBlock;
    at::parallel_for(0, rows * blocks_per_row, 16, [&](int64_t t0, int64_t t1) {
      int32_t j[kBlock];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t row = t / blocks_per_row, blk = t % blocks_per_row;
        const int64_t b = row * length + blk * kBlock;
        const int64_t len = std::min(kBlock, (row + 1) * length - b);
        if (gv != nullptr) {
          const double* srow = slope.data() + row * nbins;
          block_slope_index(vp + b, len, bb, j);
          if (wp == nullptr) {
            for (int64_t k = 0; k < len; ++k) gv[b + k] = static_cast<scalar_t>(srow[j[k]]);
          } else {
            for (int64_t k = 0; k < len; ++k) {
              gv[b + k] = static_cast<scalar_t>(static_cast<double>(wp[b + k]) * srow[j[k]]);
            }
          }
        }
        if (gw != nullptr) {
          // d / d w = (1 - f) g[j] + f g[j + 1], with f in float64 as in the forward
          const scalar_t* grow = gp + row * nbins;
          for (int64_t k = 0; k < len; ++k) j[k] = pair_of(position(vp[b + k], bb), bb);
          for (int64_t k = 0; k < len; ++k) {
            const scalar_t x = vp[b + k];
            const double share = share_of(x, j[k], bb);
            const double g0 = static_cast<double>(grow[j[k]]);
            const double g1 = static_cast<double>(grow[j[k] + 1]);
            gw[b + k] = in_range(x, bb) ? static_cast<scalar_t>((1.0 - share) * g0 + share * g1)
                                        : scalar_t(0);
          }
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
