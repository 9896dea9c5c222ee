// Binning maths shared by the CPU and CUDA histogram kernels.
//
// soft (triangle-kernel) histogram on [lo, hi] with nbins bins of width D = (hi - lo)/nbins
// and centres c_j = lo + (j + 1/2) D: a value v at s = (v - lo)/D - 1/2 splits its weight
// between bins floor(s) (1 - f) and floor(s) + 1 (f), f = s - floor(s). Between lo and the
// first centre, and between the last centre and hi, all of it goes to the edge bin, so the
// histogram sums to the weight in [lo, hi]; values outside [lo, hi] (and +-inf) are left out.
// The backward of value v with weight w, g the gradient of the histogram's row:
//   d / d v = w slope (g[j1] - g[j0]),   d / d w = w0 g[j0] + w1 g[j1]
// (slope = d w1 / d v = 1/D between the centres, 0 at the edges); values left out get 0.
#pragma once

#include <cstdint>

#include "hd.h"
#include "paint.h"  // floor_int

namespace lss {

struct SoftBin {
  int64_t j0, j1;  // the two bins (equal at the edges)
  double w0, w1;   // their shares, w0 + w1 = 1
  double slope;    // d w1 / d v = - d w0 / d v (0 at the edges)
};

// The histogram's constants, computed once per call.
struct SoftBins {
  double lo, hi, inv_width;
  int64_t nbins;
};

inline SoftBins make_soft_bins(double lo, double hi, int64_t nbins) {
  return SoftBins{lo, hi, static_cast<double>(nbins) / (hi - lo), nbins};
}

LSS_HD inline bool soft_bin(double v, const SoftBins& h, SoftBin* b) {
  if (!(v >= h.lo && v <= h.hi)) return false;
  const int64_t nbins = h.nbins;
  const double s = (v - h.lo) * h.inv_width - 0.5;
  if (s <= 0.0 || nbins == 1) {
    *b = SoftBin{0, 0, 1.0, 0.0, 0.0};
  } else if (s >= static_cast<double>(nbins - 1)) {
    *b = SoftBin{nbins - 1, nbins - 1, 1.0, 0.0, 0.0};
  } else {
    int64_t j = floor_int(s);
    if (j > nbins - 2) j = nbins - 2;
    const double f = s - static_cast<double>(j);
    *b = SoftBin{j, j + 1, 1.0 - f, f, h.inv_width};
  }
  return true;
}

// The backward of value i (see the top of the file; weights may be null); either output may be
// null (not asked for). Leaves the outputs alone for a value the histogram leaves out (the
// caller zero-fills them).
template <typename scalar_t>
LSS_HD inline void soft_bin_backward(double value, const scalar_t* weights, int64_t i,
                                     const scalar_t* grad_row, const SoftBins& h,
                                     scalar_t* grad_value, scalar_t* grad_weight) {
  SoftBin b;
  if (!soft_bin(value, h, &b)) return;
  const double g0 = static_cast<double>(grad_row[b.j0]);
  const double g1 = static_cast<double>(grad_row[b.j1]);
  if (grad_value != nullptr) {
    *grad_value = static_cast<scalar_t>(weight_or_one(weights, i) * b.slope * (g1 - g0));
  }
  if (grad_weight != nullptr) *grad_weight = static_cast<scalar_t>(b.w0 * g0 + b.w1 * g1);
}

}  // namespace lss
