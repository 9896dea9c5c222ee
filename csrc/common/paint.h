// Mass assignment (paint) and its adjoint (readout): the per-particle maths.
//
// Grid convention: a periodic box of side L on n cells per side,
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

// floor(v) as an integer for |v| < 2^62, without a libm call (floor and fmod are out-of-line
// calls on baseline x86-64 and dominated the cost of painting).
LSS_HD inline int64_t floor_int(double v) {
  const int64_t i = static_cast<int64_t>(v);
  return i - (v < static_cast<double>(i) ? 1 : 0);
}

// x wrapped into [0, L), with the result of fmod(x, L) (+ L if negative), which is exact in
// IEEE arithmetic. The common cases take no libm call: inside the box, two compares; one box
// away, one subtraction, exact by Sterbenz's lemma (or the same rounding as fmod's + L).
// A result that rounds to L (a tiny negative x) becomes the largest double below L, so it
// stays in the last cell.
LSS_HD inline double wrap_position(double x, double box_size) {
  if (x >= 0.0 && x < box_size) return x;
  double y;
  if (x >= box_size && x < 2.0 * box_size) {
    y = x - box_size;
  } else if (x < 0.0 && x >= -box_size) {
    y = x + box_size;
  } else {
    y = fmod(x, box_size);
    if (y < 0.0) y += box_size;
  }
  if (!(y >= 0.0)) y = 0.0;
  if (!(y < box_size)) y = nextafter(box_size, 0.0);
  return y;
}

// Cell index i in [0, n) of a wrapped position: floor(y / h), clamped for the
// rare y just below L whose quotient rounds up to n.
LSS_HD inline int64_t cell_index(double u, int64_t n) {
  int64_t i = floor_int(u);
  if (i >= n) i = n - 1;
  if (i < 0) i = 0;
  return i;
}

// (i0 + a) mod n for i0 in [0, n) and a < 3: at most a few subtractions.
LSS_HD inline int64_t wrap_index(int64_t i, int64_t n) {
  while (i >= n) i -= n;
  return i;
}

// The grid's constants, computed once per call: h = L / n and its inverse.
struct GridSpec {
  double box_size, h, inv_h;
  int64_t n;
};

inline GridSpec make_grid_spec(double box_size, int64_t n) {
  return GridSpec{box_size, box_size / static_cast<double>(n),
                  static_cast<double>(n) / box_size, n};
}

// u = x / h for the wrapped x, in [0, n]. A multiply is a few ulp away from the float64
// division, which only matters where u is within rounding of an integer (a cell edge, where
// the NGP index is decided): there the division itself is used, so floor(u) is exactly
// floor(x / h) everywhere, as numpy.histogramdd has it.
// CIC and TSC weights are continuous across cell edges, so they take the multiply as is.
template <bool EXACT>
LSS_HD inline double cell_coordinate(double x, const GridSpec& g) {
  const double y = wrap_position(x, g.box_size);
  double u = y * g.inv_h;
  if (EXACT) {
    const double r = u - static_cast<double>(floor_int(u));
    if (r < 1e-8 || r > 1.0 - 1e-8) u = y / g.h;
  }
  return u;
}

// First cell i0 (in [0, n)) and the offset t the weights depend on (CIC: f, TSC: d).
template <int ORDER>
LSS_HD inline void locate(double u, int64_t n, int64_t* i0, double* t) {
  if (ORDER == 1) {
    *i0 = cell_index(u, n);
    *t = 0.0;
  } else if (ORDER == 2) {
    const double s = u - 0.5;
    int64_t i = floor_int(s);              // in [-1, n - 1]
    double f = s - static_cast<double>(i);
    if (i >= n) { i = n - 1; f = 1.0; }    // rounding guard
    *i0 = i < 0 ? i + n : i;
    *t = f;
  } else {
    const int64_t i = cell_index(u, n);
    *t = u - static_cast<double>(i) - 0.5;  // in [-1/2, 1/2]
    *i0 = i == 0 ? n - 1 : i - 1;
  }
}

// Weights w (sum 1) and dw = dw/du of the ORDER cells from i0, given the offset t.
template <int ORDER>
LSS_HD inline void stencil_weights(double t, double* w, double* dw) {
  if (ORDER == 1) {
    w[0] = 1.0;
    dw[0] = 0.0;
  } else if (ORDER == 2) {
    w[0] = 1.0 - t;
    w[1] = t;
    dw[0] = -1.0;
    dw[1] = 1.0;
  } else {
    const double a = 0.5 - t, b = 0.5 + t;
    w[0] = 0.5 * a * a;
    w[1] = 0.75 - t * t;
    w[2] = 0.5 * b * b;
    dw[0] = -a;
    dw[1] = -2.0 * t;
    dw[2] = b;
  }
}

template <int ORDER>
struct Stencil1D {
  int64_t i0;         // first cell, in [0, n)
  double w[ORDER];    // weights, sum to 1
  double dw[ORDER];   // d w / d u
};

template <int ORDER>
LSS_HD inline Stencil1D<ORDER> make_stencil(double x, const GridSpec& g) {
  Stencil1D<ORDER> s;
  double t;
  locate<ORDER>(cell_coordinate<ORDER == 1>(x, g), g.n, &s.i0, &t);
  stencil_weights<ORDER>(t, s.w, s.dw);
  return s;
}

template <int ORDER>
LSS_HD inline Stencil1D<ORDER> make_stencil(int64_t i0, double t) {
  Stencil1D<ORDER> s;
  s.i0 = i0;
  stencil_weights<ORDER>(t, s.w, s.dw);
  return s;
}

// Calls f(linear_index, weight) for each of the ORDER^3 cells a particle touches.
template <int ORDER, typename F>
LSS_HD inline void for_each_cell(const Stencil1D<ORDER>& sx, const Stencil1D<ORDER>& sy,
                                 const Stencil1D<ORDER>& sz, int64_t n, F&& f) {
  int64_t iz[ORDER];
  for (int c = 0; c < ORDER; ++c) iz[c] = wrap_index(sz.i0 + c, n);
  for (int a = 0; a < ORDER; ++a) {
    const int64_t ix = wrap_index(sx.i0 + a, n);
    for (int b = 0; b < ORDER; ++b) {
      const int64_t row = (ix * n + wrap_index(sy.i0 + b, n)) * n;
      const double wxy = sx.w[a] * sy.w[b];
      for (int c = 0; c < ORDER; ++c) f(row + iz[c], wxy * sz.w[c]);
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

// One particle of readout: out[p] = the interpolated field (GRAD false), or
// out[3p..3p+2] = weight * its gradient (GRAD true).
template <int ORDER, bool GRAD, typename scalar_t>
LSS_HD inline void readout_particle(const scalar_t* field, const scalar_t* pos,
                                    const scalar_t* wts, int64_t p, const GridSpec& g,
                                    scalar_t* out) {
  const auto sx = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 0]), g);
  const auto sy = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 1]), g);
  const auto sz = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 2]), g);
  double value, grad[3];
  interpolate<ORDER, GRAD>(field, sx, sy, sz, g.n, g.inv_h, &value, grad);
  if (GRAD) {
    const double w = weight_or_one(wts, p);
    out[3 * p + 0] = static_cast<scalar_t>(w * grad[0]);
    out[3 * p + 1] = static_cast<scalar_t>(w * grad[1]);
    out[3 * p + 2] = static_cast<scalar_t>(w * grad[2]);
  } else {
    out[p] = static_cast<scalar_t>(value);
  }
}

}  // namespace lss

// Runs the lambda with `constexpr int ORDER` set from the runtime scheme order (1, 2, 3).
#define LSS_DISPATCH_ORDER(order, ...)                          \
  switch (order) {                                              \
    case 1: { constexpr int ORDER = 1; __VA_ARGS__(); break; } \
    case 2: { constexpr int ORDER = 2; __VA_ARGS__(); break; } \
    default: { constexpr int ORDER = 3; __VA_ARGS__(); break; } \
  }
