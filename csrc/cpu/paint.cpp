// CPU paint / readout. See csrc/common/paint.h for the maths and conventions.
//
// Painting scatters into a shared grid, so threads must not race. Particles are bucketed by
// the x-slab of their first stencil cell into an even number of slab blocks, each at least
// 2 slabs wide (a TSC stencil spans 3 slabs, so it reaches at most one slab into the next
// block). Even blocks are painted in parallel, then odd blocks: blocks of one parity never
// touch the same cells. For one chunk of particles at a time:
//   1. count: the block of each particle (x only), counted per task;
//   2. locate: each particle's first cell and offsets, written straight into its block's
//      place in a record buffer (a stable counting sort);
//   3. deposit: blocks of one parity in parallel, then the other, streaming the records.
// The extra memory is one record buffer per chunk, sized to at most one grid (and at least
// 2^14 particles, about 0.5 MiB, for tiny grids; at most 2^20 particles), never a grid per thread; the summation order, hence the result, does
// not depend on the number of threads; and each thread's writes stay within a few slabs,
// which keeps a large grid's random updates in cache.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../common/paint.h"
#include "../common/paint_checks.h"

namespace lss {
namespace {

constexpr int64_t kMinChunk = int64_t{1} << 14;       // particles bucketed at a time: at least,
constexpr int64_t kMaxChunk = int64_t{1} << 20;       // at most
constexpr int64_t kSortThreshold = int64_t{1} << 13;  // below: one serial loop
constexpr int64_t kMaxBlocks = 256;

// A located particle: its first cell per dimension, its offsets and its weight.
template <typename scalar_t, int ORDER>
struct Record {
  int32_t i0[3];
  scalar_t t[ORDER > 1 ? 3 : 1];
  scalar_t w;
};

// Fills *r field by field: building a record on the stack and copying it whole stalls on
// store-to-load forwarding (small stores, one wide load), which cost more than the maths.
template <int ORDER, typename scalar_t>
inline void locate_particle(const scalar_t* pos, const scalar_t* wts, int64_t p,
                            const GridSpec& g, int64_t i0x, double tx,
                            Record<scalar_t, ORDER>* r) {
  r->i0[0] = static_cast<int32_t>(i0x);
  if (ORDER > 1) r->t[0] = static_cast<scalar_t>(tx);
  for (int d = 1; d < 3; ++d) {
    int64_t i0;
    double t;
    locate<ORDER>(cell_coordinate<ORDER == 1>(static_cast<double>(pos[3 * p + d]), g), g.n, &i0, &t);
    r->i0[d] = static_cast<int32_t>(i0);
    if (ORDER > 1) r->t[d] = static_cast<scalar_t>(t);
  }
  r->w = wts != nullptr ? wts[p] : scalar_t(1);
}

template <int ORDER, typename scalar_t>
inline void locate_x(const scalar_t* pos, int64_t p, const GridSpec& g, int64_t* i0, double* t) {
  locate<ORDER>(cell_coordinate<ORDER == 1>(static_cast<double>(pos[3 * p]), g), g.n, i0, t);
}

template <int ORDER, typename scalar_t>
inline void deposit(const Record<scalar_t, ORDER>& r, scalar_t* grid, int64_t n) {
  if (ORDER == 1) {
    grid[(static_cast<int64_t>(r.i0[0]) * n + r.i0[1]) * n + r.i0[2]] += r.w;
    return;
  }
  const auto sx = make_stencil<ORDER>(r.i0[0], static_cast<double>(r.t[0]));
  const auto sy = make_stencil<ORDER>(r.i0[1], static_cast<double>(r.t[1]));
  const auto sz = make_stencil<ORDER>(r.i0[2], static_cast<double>(r.t[2]));
  const double w = static_cast<double>(r.w);
  for_each_cell<ORDER>(sx, sy, sz, n, [&](int64_t idx, double wc) {
    grid[idx] += static_cast<scalar_t>(w * wc);
  });
}

// Largest even block count <= n / 2 (so every block has >= 2 slabs), capped.
inline int64_t block_count(int64_t n) {
  const int64_t nb = std::min<int64_t>(n / 2, kMaxBlocks);
  return nb - (nb % 2);
}

template <int ORDER, typename scalar_t>
void paint_kernel(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                  const GridSpec& g) {
  const int64_t n = g.n;
  const int64_t nb = block_count(n);
  if (num < kSortThreshold || nb < 2) {
    Record<scalar_t, ORDER> r;
    for (int64_t p = 0; p < num; ++p) {
      int64_t i0;
      double t;
      locate_x<ORDER>(pos, p, g, &i0, &t);
      locate_particle<ORDER>(pos, wts, p, g, i0, t, &r);
      deposit<ORDER>(r, grid, n);
    }
    return;
  }
  std::vector<int32_t> block_of_slab(n);
  for (int64_t s = 0; s < n; ++s) block_of_slab[s] = static_cast<int32_t>(s * nb / n);
  const int64_t tasks = std::max<int64_t>(1, at::get_num_threads());
  // the buffers take at most the memory of one grid (see the top of the file)
  const int64_t per_particle = sizeof(Record<scalar_t, ORDER>) + sizeof(int16_t);
  const int64_t chunk = std::clamp<int64_t>(n * n * n * int64_t{sizeof(scalar_t)} / per_particle,
                                             kMinChunk, kMaxChunk);
  std::vector<Record<scalar_t, ORDER>> records(std::min(chunk, num));
  std::vector<int16_t> block_id(std::min(chunk, num));  // kMaxBlocks fits
  std::vector<int64_t> counts(tasks * nb), block_start(nb + 1);

  for (int64_t start = 0; start < num; start += chunk) {
    const int64_t len = std::min(chunk, num - start);
    const scalar_t* cpos = pos + 3 * start;
    const scalar_t* cwts = wts != nullptr ? wts + start : nullptr;
    auto range = [&](int64_t t, int64_t* b, int64_t* e) {
      *b = len * t / tasks;
      *e = len * (t + 1) / tasks;
    };
    auto block_of = [&](int64_t p) {
      int64_t i0;
      double t;
      locate_x<ORDER>(cpos, p, g, &i0, &t);
      return block_of_slab[i0];
    };
    std::fill(counts.begin(), counts.end(), 0);
    // 1. count
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t b, e;
        range(t, &b, &e);
        int64_t* cnt = counts.data() + t * nb;
        for (int64_t p = b; p < e; ++p) {
          const int32_t blk = block_of(p);
          block_id[p] = static_cast<int16_t>(blk);
          ++cnt[blk];
        }
      }
    });
    // block-major, then task, then particle order: the write cursors
    int64_t offset = 0;
    for (int64_t blk = 0; blk < nb; ++blk) {
      block_start[blk] = offset;
      for (int64_t t = 0; t < tasks; ++t) {
        const int64_t c = counts[t * nb + blk];
        counts[t * nb + blk] = offset;
        offset += c;
      }
    }
    block_start[nb] = offset;
    // 2. locate, into sorted place
    at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t b, e;
        range(t, &b, &e);
        int64_t* cursor = counts.data() + t * nb;
        for (int64_t p = b; p < e; ++p) {
          int64_t i0;
          double t;
          locate_x<ORDER>(cpos, p, g, &i0, &t);
          locate_particle<ORDER>(cpos, cwts, p, g, i0, t, &records[cursor[block_id[p]]++]);
        }
      }
    });
    // 3. deposit: even blocks, then odd blocks. Blocks are handed out one at a time
    //    (clustered catalogues fill some blocks far more than others); which thread paints
    //    a block does not change the result.
    for (int64_t phase = 0; phase < 2; ++phase) {
      std::atomic<int64_t> next{0};
      at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
        for (int64_t k = next++; k < nb / 2; k = next++) {
          const int64_t blk = 2 * k + phase;
          const int64_t end = block_start[blk + 1];
          for (int64_t j = block_start[blk]; j < end; ++j) deposit<ORDER>(records[j], grid, n);
        }
      });
    }
  }
}

template <int ORDER, bool GRAD, typename scalar_t>
void readout_kernel(const scalar_t* field, const scalar_t* pos, const scalar_t* wts, int64_t num,
                    const GridSpec& g, scalar_t* out) {
  at::parallel_for(0, num, 2048, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) readout_particle<ORDER, GRAD>(field, pos, wts, p, g, out);
  });
}

// paint_into's body, on checked arguments.
void paint_checked(at::Tensor& grid, const at::Tensor& positions,
                   const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  const at::Tensor pos = positions.contiguous();
  const at::Tensor wts = weights_or_undefined(weights);
  const GridSpec g = make_grid_spec(box_size, grid.size(0));
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "paint_cpu", [&] {
    const scalar_t* w = wts.defined() ? wts.data_ptr<scalar_t>() : nullptr;
    LSS_DISPATCH_ORDER(order, [&] {
      paint_kernel<ORDER>(pos.data_ptr<scalar_t>(), w, pos.size(0), grid.data_ptr<scalar_t>(), g);
    });
  });
}

void paint_into_cpu(at::Tensor grid, const at::Tensor& positions,
                    const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  check_paint_into_args(grid, positions, weights, box_size, order);
  TORCH_CHECK(positions.is_cpu() && grid.is_cpu(), "paint_into_cpu: tensors must be on the CPU");
  paint_checked(grid, positions, weights, box_size, order);
}

at::Tensor paint_cpu(const at::Tensor& positions, const c10::optional<at::Tensor>& weights,
                     int64_t n, double box_size, int64_t order) {
  check_paint_args(positions, weights, n, box_size, order);
  at::Tensor grid = at::zeros({n, n, n}, positions.options());
  paint_checked(grid, positions, weights, box_size, order);
  return grid;
}

template <bool GRAD>
at::Tensor readout_impl(const at::Tensor& field, const at::Tensor& positions,
                        const c10::optional<at::Tensor>& weights, double box_size, int64_t order) {
  check_readout_args(field, positions, weights, box_size, order);
  const at::Tensor f = field.contiguous();
  const at::Tensor pos = positions.contiguous();
  const at::Tensor wts = weights_or_undefined(weights);
  const int64_t num = pos.size(0);
  const GridSpec g = make_grid_spec(box_size, f.size(0));
  at::Tensor out = GRAD ? at::empty({num, 3}, pos.options()) : at::empty({num}, pos.options());
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "readout_cpu", [&] {
    const scalar_t* w = wts.defined() ? wts.data_ptr<scalar_t>() : nullptr;
    LSS_DISPATCH_ORDER(order, [&] {
      readout_kernel<ORDER, GRAD>(f.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), w, num, g,
                                  out.data_ptr<scalar_t>());
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
