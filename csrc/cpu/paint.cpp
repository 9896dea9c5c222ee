// CPU paint / readout. See csrc/common/paint.h for the maths and conventions.
//
// Painting scatters into a shared grid, so threads must not race. Particles are
// bucketed by the x-slab of their first stencil cell into an even number of slab
// blocks, each at least 2 slabs wide (a TSC stencil spans 3 slabs, so it reaches at
// most one slab into the next block). Even blocks are painted in parallel, then odd
// blocks: blocks of one parity never touch the same cells. Bucketing is a stable
// counting sort of one chunk of particles at a time, so the extra memory is one int32
// per particle of a chunk (4 MiB), never a grid per thread, and the summation order,
// hence the result, does not depend on the number of threads. The bucketing also keeps
// the writes of each thread inside a few slabs, which is what makes painting into
// a 256^3 grid fast (random updates over the whole grid are the real cost).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../common/checks.h"
#include "../common/paint.h"

namespace lss {
namespace {

constexpr int64_t kChunk = int64_t{1} << 20;      // particles bucketed at a time
constexpr int64_t kSortThreshold = int64_t{1} << 14;  // below: one serial loop
constexpr int64_t kMaxBlocks = 256;

template <int ORDER, typename scalar_t>
inline void deposit(const scalar_t* pos, const scalar_t* wts, int64_t p, scalar_t* grid,
                    int64_t n, double box_size) {
  const auto sx = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 0]), box_size, n);
  const auto sy = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 1]), box_size, n);
  const auto sz = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 2]), box_size, n);
  const double w = wts != nullptr ? static_cast<double>(wts[p]) : 1.0;
  for_each_cell<ORDER>(sx, sy, sz, n, [&](int64_t idx, double wc) {
    grid[idx] += static_cast<scalar_t>(w * wc);
  });
}

// Largest even block count <= n / 2 (so every block has >= 2 slabs), capped.
inline int64_t block_count(int64_t n) {
  int64_t nb = std::min<int64_t>(n / 2, kMaxBlocks);
  return nb - (nb % 2);
}

template <int ORDER, typename scalar_t>
void paint_kernel(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                  int64_t n, double box_size) {
  const int64_t nb = block_count(n);
  if (num < kSortThreshold || nb < 2) {
    for (int64_t p = 0; p < num; ++p) deposit<ORDER>(pos, wts, p, grid, n, box_size);
    return;
  }
  const int64_t tasks = std::max<int64_t>(1, at::get_num_threads());
  const int64_t chunk_cap = std::min(kChunk, num);
  std::vector<int32_t> block_of(chunk_cap), order(chunk_cap);
  std::vector<int64_t> counts(tasks * nb), block_start(nb + 1);

  for (int64_t start = 0; start < num; start += kChunk) {
    const int64_t len = std::min(kChunk, num - start);
    const scalar_t* cpos = pos + 3 * start;
    const scalar_t* cwts = wts != nullptr ? wts + start : nullptr;
    auto range = [&](int64_t t, int64_t& b, int64_t& e) {
      b = len * t / tasks;
      e = len * (t + 1) / tasks;
    };
    std::fill(counts.begin(), counts.end(), 0);
    // 1. block of each particle, counted per task.
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t b, e;
        range(t, b, e);
        int64_t* cnt = counts.data() + t * nb;
        for (int64_t p = b; p < e; ++p) {
          const auto sx = make_stencil<ORDER>(static_cast<double>(cpos[3 * p]), box_size, n);
          const int32_t blk = static_cast<int32_t>(sx.i0 * nb / n);
          block_of[p] = blk;
          ++cnt[blk];
        }
      }
    });
    // 2. stable counting sort: block-major, then task, then original order.
    int64_t offset = 0;
    for (int64_t blk = 0; blk < nb; ++blk) {
      block_start[blk] = offset;
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t c = counts[t * nb + blk];
        counts[t * nb + blk] = offset;  // becomes the write cursor
        offset += c;
      }
    }
    block_start[nb] = offset;
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t b, e;
        range(t, b, e);
        int64_t* cursor = counts.data() + t * nb;
        for (int64_t p = b; p < e; ++p) order[cursor[block_of[p]]++] = static_cast<int32_t>(p);
      }
    });
    // 3. paint even blocks, then odd blocks.
    for (int64_t phase = 0; phase < 2; ++phase) {
      at::parallel_for(0, nb / 2, 1, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t blk = 2 * k + phase;
          for (int64_t j = block_start[blk]; j < block_start[blk + 1]; ++j) {
            deposit<ORDER>(cpos, cwts, order[j], grid, n, box_size);
          }
        }
      });
    }
  }
}

template <int ORDER, bool GRAD, typename scalar_t>
void readout_kernel(const scalar_t* field, const scalar_t* pos, const scalar_t* wts, int64_t num,
                    int64_t n, double box_size, scalar_t* out) {
  const double inv_h = static_cast<double>(n) / box_size;
  at::parallel_for(0, num, 2048, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const auto sx = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 0]), box_size, n);
      const auto sy = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 1]), box_size, n);
      const auto sz = make_stencil<ORDER>(static_cast<double>(pos[3 * p + 2]), box_size, n);
      double value, grad[3];
      interpolate<ORDER, GRAD>(field, sx, sy, sz, n, inv_h, &value, grad);
      if (GRAD) {
        const double w = wts != nullptr ? static_cast<double>(wts[p]) : 1.0;
        out[3 * p + 0] = static_cast<scalar_t>(w * grad[0]);
        out[3 * p + 1] = static_cast<scalar_t>(w * grad[1]);
        out[3 * p + 2] = static_cast<scalar_t>(w * grad[2]);
      } else {
        out[p] = static_cast<scalar_t>(value);
      }
    }
  });
}

#define LSS_DISPATCH_ORDER(order, ...)            \
  switch (order) {                                \
    case 1: { constexpr int ORDER = 1; __VA_ARGS__(); break; } \
    case 2: { constexpr int ORDER = 2; __VA_ARGS__(); break; } \
    default: { constexpr int ORDER = 3; __VA_ARGS__(); break; } \
  }

void paint_into_cpu(at::Tensor grid, const at::Tensor& positions,
                    const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  check_positions(positions);
  check_weights(weights, positions);
  check_box_size(box_size);
  check_order(order);
  check_field(grid, positions, "grid");
  TORCH_CHECK(grid.is_contiguous(), "grid (out=) must be contiguous");
  TORCH_CHECK(positions.is_cpu() && grid.is_cpu(), "paint_into_cpu: tensors must be on the CPU");
  const at::Tensor pos = positions.contiguous();
  const at::Tensor wts = weights_or_undefined(weights);
  const int64_t n = grid.size(0);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "paint_cpu", [&] {
    const scalar_t* w = wts.defined() ? wts.data_ptr<scalar_t>() : nullptr;
    LSS_DISPATCH_ORDER(order, [&] {
      paint_kernel<ORDER>(pos.data_ptr<scalar_t>(), w, pos.size(0), grid.data_ptr<scalar_t>(), n,
                          box_size);
    });
  });
}

at::Tensor paint_cpu(const at::Tensor& positions, const c10::optional<at::Tensor>& weights,
                     int64_t n, double box_size, int64_t order) {
  check_grid_size(n);
  LSS_CHECK_FLOATING(positions, "positions");
  at::Tensor grid = at::zeros({n, n, n}, positions.options());
  paint_into_cpu(grid, positions, weights, box_size, order);
  return grid;
}

template <bool GRAD>
at::Tensor readout_impl(const at::Tensor& field, const at::Tensor& positions,
                        const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  check_positions(positions);
  check_weights(weights, positions);
  check_field(field, positions, "field");
  check_box_size(box_size);
  check_order(order);
  const at::Tensor f = field.contiguous();
  const at::Tensor pos = positions.contiguous();
  const at::Tensor wts = weights_or_undefined(weights);
  const int64_t num = pos.size(0);
  at::Tensor out = GRAD ? at::empty({num, 3}, pos.options()) : at::empty({num}, pos.options());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "readout_cpu", [&] {
    const scalar_t* w = wts.defined() ? wts.data_ptr<scalar_t>() : nullptr;
    LSS_DISPATCH_ORDER(order, [&] {
      readout_kernel<ORDER, GRAD>(f.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), w, num,
                                  f.size(0), box_size, out.data_ptr<scalar_t>());
    });
  });
  return out;
}

at::Tensor readout_cpu(const at::Tensor& field, const at::Tensor& positions, double box_size,
                       int64_t order) {
  return readout_impl<false>(field, positions, c10::nullopt, box_size, order);
}

at::Tensor readout_gradient_cpu(const at::Tensor& field, const at::Tensor& positions,
                                const c10::optional<at::Tensor>& weights, double box_size,
                                int64_t order) {
  return readout_impl<true>(field, positions, weights, box_size, order);
}

}  // namespace
}  // namespace lss

TORCH_LIBRARY_IMPL(lsscore, CPU, m) {
  m.impl("paint", &lss::paint_cpu);
  m.impl("paint_into", &lss::paint_into_cpu);
  m.impl("readout", &lss::readout_cpu);
  m.impl("readout_gradient", &lss::readout_gradient_cpu);
}
