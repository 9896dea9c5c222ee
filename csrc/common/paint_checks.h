// paint's, paint_into's, readout's and readout_gradient's arguments (host code only), for the
// CPU and CUDA implementations alike.
#pragma once

#include <ATen/ATen.h>
#include <cmath>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "checks.h"

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

// Positions are mapped to cells through x n / L. n / L must be a finite double (a box smaller
// than n * 5.6e-309 would turn every position into NaN), and a position of order one must
// land at a cell coordinate an int64 holds: a box below n 2^-62 (about 2e-19 n) is no
// physical box in the units of the positions (Mpc/h), and its cell coordinates overflow.
inline void check_cell_size(double box_size, int64_t n) {
  const double cells_per_unit = static_cast<double>(n) / box_size;
  TORCH_CHECK(std::isfinite(cells_per_unit), "box_size ", box_size, " is too small for ", n,
              " cells per side (n / box_size overflows)");
  TORCH_CHECK(cells_per_unit < 0x1p62, "box_size ", box_size, " is too small for ", n,
              " cells per side: a position of 1 would be at cell coordinate ", cells_per_unit,
              ", beyond 2^62; give box_size in the units of the positions (Mpc/h)");
}

// The memory of the CPU machine, in bytes (0 where unknown).
inline double physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0.0;
}

// paint allocates an (n, n, n) grid: on the CPU, refuse one larger than the machine's memory
// with a message that names n, rather than the allocator's.
inline void check_grid_fits(int64_t n, const at::Tensor& positions) {
  if (!positions.is_cpu()) return;  // the CUDA allocator's message names the size it tried
  const double bytes = std::pow(static_cast<double>(n), 3) *
                       static_cast<double>(positions.element_size());
  const double memory = physical_memory_bytes();
  TORCH_CHECK(memory == 0.0 || bytes <= memory, "n = ", n, " cells per side needs a grid of ",
              bytes / 0x1p30, " GiB (", positions.scalar_type(), "), more than this machine's ",
              memory / 0x1p30, " GiB of memory; use a smaller n");
}

inline void check_order(int64_t order) {
  TORCH_CHECK(order >= 1 && order <= 3,
              "scheme order must be 1 (ngp), 2 (cic) or 3 (tsc), got ", order);
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

// The particles: positions, weights, box size and scheme order.
inline void check_particles(const at::Tensor& positions, const c10::optional<at::Tensor>& weights,
                            double box_size, int64_t order) {
  check_positions(positions);
  check_weights(weights, positions);
  check_box_size(box_size);
  check_order(order);
}

// paint: the particles and the size of the grid it allocates.
inline void check_paint_args(const at::Tensor& positions, const c10::optional<at::Tensor>& weights,
                             int64_t n, double box_size, int64_t order) {
  check_grid_size(n);
  check_particles(positions, weights, box_size, order);
  check_cell_size(box_size, n);
  check_grid_fits(n, positions);
}

// The particles and the grid they are painted into or read from (`name` in messages).
inline void check_particles_on_grid(const at::Tensor& grid, const at::Tensor& positions,
                                    const c10::optional<at::Tensor>& weights, double box_size,
                                    int64_t order, const char* name) {
  check_particles(positions, weights, box_size, order);
  check_field(grid, positions, name);
  check_cell_size(box_size, grid.size(0));
}

// paint_into: the particles and the grid it accumulates into.
inline void check_paint_into_args(const at::Tensor& grid, const at::Tensor& positions,
                                  const c10::optional<at::Tensor>& weights, double box_size,
                                  int64_t order) {
  check_particles_on_grid(grid, positions, weights, box_size, order, "grid");
  TORCH_CHECK(grid.is_contiguous(), "grid (out=) must be contiguous");
}

// readout and readout_gradient: the particles and the field they read.
inline void check_readout_args(const at::Tensor& field, const at::Tensor& positions,
                               const c10::optional<at::Tensor>& weights, double box_size,
                               int64_t order) {
  check_particles_on_grid(field, positions, weights, box_size, order, "field");
}

}  // namespace lss
