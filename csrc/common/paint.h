// Mass assignment (paint) and its adjoint (readout): the per-particle maths.
//
// Grid convention (SPEC section 4): a periodic box of side L on n cells per side,
// cell size h = L/n; cell i covers [i h, (i+1) h), its centre is (i + 1/2) h.
// Positions are wrapped into [0, L) with fmod (exact in IEEE arithmetic, so huge
// coordinates stay in range) and all index maths is done in float64.
//
// A scheme of order p (1 = NGP, 2 = CIC, 3 = TSC) touches p consecutive cells per
// dimension, starting at cell i0 (already wrapped into [0, n)). With u = x / h:
//   NGP: i0 = floor(u),                 w = {1}
//   CIC: s = u - 1/2, i0 = floor(s), f = s - i0,   w = {1 - f, f}
//   TSC: i = floor(u), d = u - i - 1/2, i0 = i - 1,
//        w = {(1/2 - d)^2 / 2, 3/4 - d^2, (1/2 + d)^2 / 2}
// dw holds dw/du, so dw/dx = dw / h.
#pragma once

#include <cmath>
#include <cstdint>

#include "hd.h"

namespace lss {

// x wrapped into [0, L). Never returns a value outside [0, L) for finite x.
LSS_HD inline double wrap_position(double x, double box_size) {
  double y = fmod(x, box_size);  // exact, |y| < L, sign of x
  if (y < 0.0) y += box_size;    // may round up to L for tiny negative y
  if (!(y < box_size) || !(y >= 0.0)) y = 0.0;
  return y;
}

// Cell index i in [0, n) of a wrapped position: floor(y / h), clamped for the
// rare y just below L whose quotient rounds up to n.
LSS_HD inline int64_t cell_index(double u, int64_t n) {
  int64_t i = static_cast<int64_t>(floor(u));
  if (i >= n) i = n - 1;
  if (i < 0) i = 0;
  return i;
}

// (i0 + a) mod n for i0 in [0, n) and a < 3: at most a few subtractions.
LSS_HD inline int64_t wrap_index(int64_t i, int64_t n) {
  while (i >= n) i -= n;
  return i;
}

template <int ORDER>
struct Stencil1D {
  int64_t i0;         // first cell, in [0, n)
  double w[ORDER];    // weights, sum to 1
  double dw[ORDER];   // d w / d u
};

template <int ORDER>
LSS_HD inline Stencil1D<ORDER> make_stencil(double x, double box_size, int64_t n) {
  Stencil1D<ORDER> s;
  const double h = box_size / static_cast<double>(n);
  const double u = wrap_position(x, box_size) / h;
  if (ORDER == 1) {
    s.i0 = cell_index(u, n);
    s.w[0] = 1.0;
    s.dw[0] = 0.0;
  } else if (ORDER == 2) {
    const double t = u - 0.5;
    double fl = floor(t);
    double f = t - fl;
    int64_t i0 = static_cast<int64_t>(fl);  // in [-1, n - 1]
    if (i0 >= n) { i0 = n - 1; f = 1.0; }   // rounding guard
    s.i0 = i0 < 0 ? i0 + n : i0;
    s.w[0] = 1.0 - f;
    s.w[1] = f;
    s.dw[0] = -1.0;
    s.dw[1] = 1.0;
  } else {
    const int64_t i = cell_index(u, n);
    const double d = u - static_cast<double>(i) - 0.5;  // in [-1/2, 1/2]
    s.i0 = i == 0 ? n - 1 : i - 1;
    const double a = 0.5 - d, b = 0.5 + d;
    s.w[0] = 0.5 * a * a;
    s.w[1] = 0.75 - d * d;
    s.w[2] = 0.5 * b * b;
    s.dw[0] = -a;
    s.dw[1] = -2.0 * d;
    s.dw[2] = b;
  }
  return s;
}

// Calls f(linear_index, weight) for each of the ORDER^3 cells a particle touches.
template <int ORDER, typename F>
LSS_HD inline void for_each_cell(const Stencil1D<ORDER>& sx, const Stencil1D<ORDER>& sy,
                                 const Stencil1D<ORDER>& sz, int64_t n, F&& f) {
  for (int a = 0; a < ORDER; ++a) {
    const int64_t ix = wrap_index(sx.i0 + a, n);
    for (int b = 0; b < ORDER; ++b) {
      const int64_t iy = wrap_index(sy.i0 + b, n);
      const int64_t row = (ix * n + iy) * n;
      const double wxy = sx.w[a] * sy.w[b];
      for (int c = 0; c < ORDER; ++c) {
        f(row + wrap_index(sz.i0 + c, n), wxy * sz.w[c]);
      }
    }
  }
}

// Interpolated value and its gradient (d/dx, in field units per Mpc/h) at a particle.
template <int ORDER, bool GRAD, typename scalar_t>
LSS_HD inline void interpolate(const scalar_t* field, const Stencil1D<ORDER>& sx,
                               const Stencil1D<ORDER>& sy, const Stencil1D<ORDER>& sz,
                               int64_t n, double inv_h, double* value, double grad[3]) {
  double v = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
  for (int a = 0; a < ORDER; ++a) {
    const int64_t ix = wrap_index(sx.i0 + a, n);
    for (int b = 0; b < ORDER; ++b) {
      const int64_t iy = wrap_index(sy.i0 + b, n);
      const int64_t row = (ix * n + iy) * n;
      for (int c = 0; c < ORDER; ++c) {
        const double f = static_cast<double>(field[row + wrap_index(sz.i0 + c, n)]);
        v += sx.w[a] * sy.w[b] * sz.w[c] * f;
        if (GRAD) {
          gx += sx.dw[a] * sy.w[b] * sz.w[c] * f;
          gy += sx.w[a] * sy.dw[b] * sz.w[c] * f;
          gz += sx.w[a] * sy.w[b] * sz.dw[c] * f;
        }
      }
    }
  }
  *value = v;
  if (GRAD) {
    grad[0] = gx * inv_h;
    grad[1] = gy * inv_h;
    grad[2] = gz * inv_h;
  }
}

}  // namespace lss
