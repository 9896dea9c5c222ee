// bin_power, the binning of |F(k)|^2 behind power_spectrum: the per-mode maths.
//
// spectrum (..., M, 2) holds a complex spectrum as real pairs (re_m, im_m); index (M,) the bin
// of each mode and weight (M,) an optional per-mode weight (1 without one):
//   forward:   out[..., b] = sum over m with index[m] == b of weight[m] (re_m^2 + im_m^2)
//   backward:  d out[..., b] / d (re_m, im_m) = 2 weight[m] (re_m, im_m) [index[m] == b]
// Index entries outside [0, nbins) leave the mode out. Sums are taken in float64.
#pragma once

#include <cstdint>

#include "hd.h"

namespace lss {

// Whether bin b is one of the result's: modes with any other index are left out.
LSS_HD inline bool in_bins(int64_t b, int64_t nbins) { return b >= 0 && b < nbins; }

// w |F|^2 of one mode, F = pair[0] + i pair[1].
template <typename scalar_t>
LSS_HD inline double weighted_power(const scalar_t* pair, double w) {
  const double re = static_cast<double>(pair[0]), im = static_cast<double>(pair[1]);
  return w * (re * re + im * im);
}

// The backward of one mode: g = d loss / d out[..., b] for the mode's bin, so
// d loss / d (re, im) = 2 w g (re, im), written to out[0], out[1].
template <typename scalar_t>
LSS_HD inline void weighted_power_backward(const scalar_t* pair, double w, double g,
                                           scalar_t* out) {
  const double scale = 2.0 * w * g;
  out[0] = static_cast<scalar_t>(scale * static_cast<double>(pair[0]));
  out[1] = static_cast<scalar_t>(scale * static_cast<double>(pair[1]));
}

}  // namespace lss
