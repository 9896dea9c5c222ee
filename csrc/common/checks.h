// Argument validation shared by the CPU and CUDA implementations (host code only).
// Every user-facing mistake becomes a TORCH_CHECK (a Python RuntimeError) that
// names the argument; nothing is read or written before these checks pass.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

#include "hd.h"

namespace lss {

inline void check_box_size(double box_size) {
  TORCH_CHECK(std::isfinite(box_size) && box_size > 0.0,
              "box_size must be a positive finite number, got ", box_size);
}

inline void check_grid_size(int64_t n) {
  TORCH_CHECK(n >= 1, "n (cells per side) must be >= 1, got ", n);
  // n^3 must fit comfortably in int64 indexing.
  TORCH_CHECK(n <= (int64_t{1} << 20), "n (cells per side) is too large: ", n);
}

inline void check_order(int64_t order) {
  TORCH_CHECK(order >= 1 && order <= 3,
              "scheme order must be 1 (ngp), 2 (cic) or 3 (tsc), got ", order);
}

// Counts non-finite entries. On the CPU a parallel scan with no temporary; on other
// devices one ATen reduction (and one sync).
inline int64_t count_nonfinite(const at::Tensor& t) {
  if (t.numel() == 0) return 0;
  if (!t.is_cpu()) return at::logical_not(at::isfinite(t)).sum().item<int64_t>();
  const at::Tensor c = t.contiguous();
  int64_t bad = 0;
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "count_nonfinite", [&] {
    const scalar_t* p = c.data_ptr<scalar_t>();
    bad = at::parallel_reduce(
        0, c.numel(), 1 << 16, int64_t{0},
        [&](int64_t b, int64_t e, int64_t acc) {
          for (int64_t i = b; i < e; ++i) acc += std::isfinite(p[i]) ? 0 : 1;
          return acc;
        },
        [](int64_t x, int64_t y) { return x + y; });
  });
  return bad;
}

inline void check_positions(const at::Tensor& positions) {
  LSS_CHECK_FLOATING(positions, "positions");
  TORCH_CHECK(positions.dim() == 2 && positions.size(1) == 3,
              "positions must have shape (N, 3), got ", positions.sizes());
  const int64_t bad = count_nonfinite(positions);
  TORCH_CHECK(bad == 0, "positions contain ", bad,
              " non-finite values (NaN or inf); remove or fix those particles first");
}

inline void check_weights(const c10::optional<at::Tensor>& weights, const at::Tensor& positions) {
  if (!weights.has_value() || !weights->defined()) return;
  const at::Tensor& w = *weights;
  TORCH_CHECK(w.dim() == 1 && w.size(0) == positions.size(0),
              "weights must have shape (N,) = (", positions.size(0), ",), got ", w.sizes());
  TORCH_CHECK(w.scalar_type() == positions.scalar_type(), "weights dtype ", w.scalar_type(),
              " differs from positions dtype ", positions.scalar_type());
  LSS_CHECK_SAME_DEVICE(w, positions, "weights", "positions");
  const int64_t bad = count_nonfinite(w);
  TORCH_CHECK(bad == 0, "weights contain ", bad, " non-finite values (NaN or inf)");
}

inline void check_field(const at::Tensor& field, const at::Tensor& positions, const char* name) {
  LSS_CHECK_FLOATING(field, "field");
  TORCH_CHECK(field.dim() == 3 && field.size(0) == field.size(1) && field.size(1) == field.size(2),
              name, " must be a cubic grid of shape (n, n, n), got ", field.sizes());
  TORCH_CHECK(field.size(0) >= 1, name, " must have at least one cell");
  TORCH_CHECK(field.scalar_type() == positions.scalar_type(), name, " dtype ",
              field.scalar_type(), " differs from positions dtype ", positions.scalar_type());
  LSS_CHECK_SAME_DEVICE(field, positions, "field", "positions");
}

inline at::Tensor weights_or_undefined(const c10::optional<at::Tensor>& weights) {
  if (weights.has_value() && weights->defined()) return weights->contiguous();
  return at::Tensor();
}

}  // namespace lss

namespace lss {

// A batch of cubes (..., n, n, n): returns n, or fails naming the argument.
inline int64_t check_cubes(const at::Tensor& field, const char* name) {
  LSS_CHECK_FLOATING(field, "field");
  TORCH_CHECK(field.dim() >= 3, name, " must have shape (..., n, n, n), got ", field.sizes());
  const int64_t n = field.size(-1);
  TORCH_CHECK(field.size(-2) == n && field.size(-3) == n, name,
              " must be cubic in its last three dimensions, got ", field.sizes());
  return n;
}

}  // namespace lss

namespace lss {

// Rows of a (..., M) tensor and a chunking of each row into pieces whose partial sums are
// added in a fixed order, so that CPU results do not depend on the number of threads.
struct RowChunks {
  int64_t rows, length, chunk, chunks;
};

inline RowChunks row_chunks(int64_t rows, int64_t length) {
  const int64_t chunk = std::max<int64_t>(int64_t{1} << 15, (length + 255) / 256);
  const int64_t chunks = length == 0 ? 0 : (length + chunk - 1) / chunk;
  return RowChunks{rows, length, chunk, chunks};
}

// out[row, j] = sum over chunks, in chunk order, of partial[row, chunk, j].
template <typename scalar_t>
inline void reduce_row_chunks(const std::vector<double>& partial, const RowChunks& rc,
                              int64_t nbins, scalar_t* out) {
  at::parallel_for(0, rc.rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t row = r0; row < r1; ++row) {
      for (int64_t j = 0; j < nbins; ++j) {
        double sum = 0.0;
        for (int64_t ch = 0; ch < rc.chunks; ++ch) sum += partial[(row * rc.chunks + ch) * nbins + j];
        out[row * nbins + j] = static_cast<scalar_t>(sum);
      }
    }
  });
}

inline void check_nbins(int64_t nbins) {
  TORCH_CHECK(nbins >= 1, "nbins must be >= 1, got ", nbins);
  TORCH_CHECK(nbins <= (int64_t{1} << 26), "nbins is too large: ", nbins);
}

inline void check_range(double lo, double hi) {
  TORCH_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
              "need finite lo < hi, got lo=", lo, " hi=", hi);
}

// (..., M) values with optional same-shaped weights. With count_nan, NaN values are an
// error here (one ATen pass); kernels that count NaN themselves pass false.
inline void check_values_weights(const at::Tensor& values, const c10::optional<at::Tensor>& weights,
                                 bool count_nan) {
  LSS_CHECK_FLOATING(values, "values");
  TORCH_CHECK(values.dim() >= 1, "values must have shape (..., M), got a scalar");
  if (count_nan && values.numel() > 0) {
    const int64_t nan = at::isnan(values).sum().item<int64_t>();
    TORCH_CHECK(nan == 0, "values contain ", nan, " NaN entries");
  }
  if (weights.has_value() && weights->defined()) {
    const at::Tensor& w = *weights;
    TORCH_CHECK(w.sizes() == values.sizes(), "weights must have the shape of values ",
                values.sizes(), ", got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == values.scalar_type(), "weights dtype ", w.scalar_type(),
                " differs from values dtype ", values.scalar_type());
    LSS_CHECK_SAME_DEVICE(w, values, "weights", "values");
    const int64_t bad = count_nonfinite(w);
    TORCH_CHECK(bad == 0, "weights contain ", bad, " non-finite values");
  }
}

inline std::vector<int64_t> with_last(at::IntArrayRef sizes, int64_t last) {
  std::vector<int64_t> out(sizes.begin(), sizes.end());
  out.back() = last;
  return out;
}

}  // namespace lss

namespace lss {

// bin_power's spectrum (..., M, 2) (a complex spectrum viewed as real pairs), index (M,) int32
// (bin numbers: 4 bytes a mode is a quarter of the kernel's memory traffic) and optional
// weight (M,). Index entries outside [0, nbins) leave the mode out, so no pass
// over the index is needed to make any index safe.
inline int64_t check_bin_power_args(const at::Tensor& spectrum, const at::Tensor& index,
                                    const c10::optional<at::Tensor>& weight, int64_t nbins) {
  check_nbins(nbins);
  LSS_CHECK_FLOATING(spectrum, "spectrum");
  TORCH_CHECK(spectrum.dim() >= 2 && spectrum.size(-1) == 2,
              "spectrum must have shape (..., M, 2) (torch.view_as_real of a complex spectrum), got ",
              spectrum.sizes());
  const int64_t length = spectrum.size(-2);
  TORCH_CHECK(index.scalar_type() == at::kInt && index.dim() == 1 && index.size(0) == length,
              "index must be an int32 tensor of shape (M,) = (", length, ",), got ",
              index.scalar_type(), " ", index.sizes());
  LSS_CHECK_SAME_DEVICE(index, spectrum, "index", "spectrum");
  if (weight.has_value() && weight->defined()) {
    TORCH_CHECK(weight->dim() == 1 && weight->size(0) == length, "weight must have shape (M,)");
    TORCH_CHECK(weight->scalar_type() == spectrum.scalar_type(), "weight dtype differs from spectrum");
    LSS_CHECK_SAME_DEVICE(*weight, spectrum, "weight", "spectrum");
  }
  return length;
}

}  // namespace lss

namespace lss {

// paint_into's and readout's arguments (shared by the CPU and CUDA implementations).
inline void check_paint_args(const at::Tensor& grid, const at::Tensor& positions,
                             const c10::optional<at::Tensor>& weights, double box_size,
                             int64_t order, const char* grid_name) {
  check_positions(positions);
  check_weights(weights, positions);
  check_box_size(box_size);
  check_order(order);
  check_field(grid, positions, grid_name);
}

// find_peaks' arguments; returns n.
inline int64_t check_find_peaks_args(const at::Tensor& field, int64_t radius, bool periodic) {
  const int64_t n = check_cubes(field, "field");
  TORCH_CHECK(radius >= 1 && radius <= 5, "radius must be between 1 and 5, got ", radius);
  TORCH_CHECK(!periodic || n >= 2 * radius + 1, "a periodic cube of ", n,
              " cells per side is smaller than the neighbourhood of radius ", radius,
              " (needs n >= ", 2 * radius + 1, "); use boundary='open' or a smaller radius");
  return n;
}

// bin_power_backward's arguments; returns M.
inline int64_t check_bin_power_backward_args(const at::Tensor& grad, const at::Tensor& spectrum,
                                             const at::Tensor& index,
                                             const c10::optional<at::Tensor>& weight) {
  LSS_CHECK_FLOATING(grad, "grad");
  TORCH_CHECK(grad.dim() >= 1, "grad must have shape (..., nbins)");
  const int64_t nbins = grad.size(-1);
  const int64_t length = check_bin_power_args(spectrum, index, weight, nbins);
  TORCH_CHECK(grad.numel() == (length == 0 ? grad.numel() : spectrum.numel() / (2 * length)) * nbins,
              "grad has ", grad.numel(), " entries; expected one row of nbins per spectrum row");
  TORCH_CHECK(grad.scalar_type() == spectrum.scalar_type(), "grad dtype differs from spectrum");
  return length;
}

}  // namespace lss
