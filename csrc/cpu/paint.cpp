// CPU paint / readout. See csrc/common/paint.h for the maths and conventions.
//
// Painting scatters into a shared grid, so threads must not race. Owner-computes: the grid's
// x-slabs are split into one contiguous range per thread (balanced on a sample of the
// particles, since clustered catalogues fill some slabs far more than others); every thread
// scans all particles and deposits only the parts of their stencils that fall in its own
// slabs (a CIC or TSC stencil that straddles two ranges is painted half by each owner). Every
// cell is written by one thread only, and always in particle order, so the result is the
// serial loop's bit for bit, whatever the number of threads or where the ranges fall.
// NGP touches one cell per particle and paints straight into the grid (the grid we allocate
// asks for huge pages, so random updates do not miss the TLB as well as the cache); on several
// threads the cells are first located in parallel, and the owners scan those indices rather
// than the positions (paint_ngp_parallel). CIC and
// TSC touch 8 and 27 cells: within its range a thread takes its particles a chunk at a time,
// buckets them (a counting sort) into groups of a few slabs, about 2 MiB of grid each, and
// paints group by group, so its writes stay in cache (a range that fits in cache as it is is
// painted directly); a particle whose stencil spans two
// groups is listed in both and paints each group's cells there, so each cell still sees its
// particles in order.
// Extra memory: at most the size of the grid (NGP: an index per particle of a chunk; CIC, TSC:
// a record buffer per thread, at least kMinRecords records each for tiny grids); no copy of
// the grid.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <memory>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <vector>

#include "../common/paint.h"
#include "../common/paint_checks.h"

namespace lss {
namespace {

constexpr int64_t kDirectThreshold = int64_t{1} << 14;  // fewer particles: one direct loop
constexpr int64_t kMinRecords = int64_t{1} << 14;       // records per thread: at least,
constexpr int64_t kMaxRecords = int64_t{1} << 22;       // at most
constexpr int64_t kGroupBytes = int64_t{1} << 21;       // grid bytes per bucket, about
constexpr int64_t kMaxGroups = 4096;                    // buckets per thread, at most
constexpr int64_t kSample = int64_t{1} << 16;           // particles sampled to balance ranges
constexpr uint16_t kNoGroup = 0xFFFF;

// A located particle: its first cell per dimension, its offsets (CIC, TSC) and its weight.
template <typename scalar_t, int ORDER>
struct Record {
  int32_t i0[3];
  scalar_t t[3];
  scalar_t w;
};
template <typename scalar_t>
struct Record<scalar_t, 1> {
  int32_t i0[3];
  scalar_t w;
};

// An owned particle of the current chunk and the (one or two) buckets its stencil reaches.
struct Listing {
  int32_t p;
  uint16_t group[2];
};

template <int ORDER, typename scalar_t>
inline void locate_axis(const scalar_t* pos, int64_t p, int d, const GridSpec& g, int64_t* i0,
                        double* t) {
  locate<ORDER>(cell_coordinate<ORDER == 1>(static_cast<double>(pos[3 * p + d]), g), g.n, i0, t);
}

// The slabs [lo, lo + width) of one thread, cut into buckets of `span` slabs; offsets are
// taken from lo going round the box, so a range may wrap.
struct SlabRange {
  int64_t lo, width, span, n;
  int64_t offset(int64_t ix) const {
    const int64_t d = ix - lo;
    return d < 0 ? d + n : d;
  }
  int64_t groups() const { return (width + span - 1) / span; }
};

// Paints the cells of a located particle whose slab offset is in [first, last).
template <int ORDER, typename scalar_t>
inline void deposit(const Record<scalar_t, ORDER>& r, scalar_t* grid, const SlabRange& range,
                    int64_t first, int64_t last) {
  const int64_t n = range.n;
  if constexpr (ORDER == 1) {
    grid[(static_cast<int64_t>(r.i0[0]) * n + r.i0[1]) * n + r.i0[2]] += r.w;
  } else {
    // the 1D weights in float64, then their products in the grid's type (float32 products
    // keep float32's precision and save a conversion per cell)
    scalar_t w[3][ORDER];
    for (int d = 0; d < 3; ++d) {
      double wd[ORDER], dw[ORDER];
      stencil_weights<ORDER>(static_cast<double>(r.t[d]), wd, dw);
      for (int k = 0; k < ORDER; ++k) w[d][k] = static_cast<scalar_t>(wd[k]);
    }
    int64_t iy[ORDER], iz[ORDER];
    for (int c = 0; c < ORDER; ++c) {
      iy[c] = wrap_index(r.i0[1] + c, n);
      iz[c] = wrap_index(r.i0[2] + c, n);
    }
    for (int a = 0; a < ORDER; ++a) {
      const int64_t ix = wrap_index(r.i0[0] + a, n);
      const int64_t off = range.offset(ix);
      if (off < first || off >= last) continue;
      const scalar_t wa = r.w * w[0][a];
      for (int b = 0; b < ORDER; ++b) {
        scalar_t* row = grid + (ix * n + iy[b]) * n;
        const scalar_t wab = wa * w[1][b];
        for (int c = 0; c < ORDER; ++c) row[iz[c]] += wab * w[2][c];
      }
    }
  }
}

template <int ORDER, typename scalar_t>
inline void make_record(const scalar_t* pos, const scalar_t* wts, int64_t p, const GridSpec& g,
                        Record<scalar_t, ORDER>* r) {
  for (int d = 0; d < 3; ++d) {
    int64_t i0;
    double t;
    locate_axis<ORDER>(pos, p, d, g, &i0, &t);
    r->i0[d] = static_cast<int32_t>(i0);
    if constexpr (ORDER > 1) r->t[d] = static_cast<scalar_t>(t);
  }
  r->w = wts != nullptr ? wts[p] : scalar_t(1);
}

// The parts of all particles' stencils in the slabs of `range`, one particle at a time: for few
// particles, and for a range small enough to stay in cache without buckets.
template <int ORDER, typename scalar_t>
void paint_range_direct(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                        const GridSpec& g, const SlabRange& range) {
  const int64_t n = g.n;
  Record<scalar_t, ORDER> r;
  for (int64_t p = 0; p < num; ++p) {
    int64_t i0;
    double t;
    locate_axis<ORDER>(pos, p, 0, g, &i0, &t);
    const int64_t d = range.offset(i0);
    if (!(d < range.width || d + ORDER - 1 >= n)) continue;  // no owned slab
    r.i0[0] = static_cast<int32_t>(i0);
    if constexpr (ORDER > 1) r.t[0] = static_cast<scalar_t>(t);
    for (int k = 1; k < 3; ++k) {
      locate_axis<ORDER>(pos, p, k, g, &i0, &t);
      r.i0[k] = static_cast<int32_t>(i0);
      if constexpr (ORDER > 1) r.t[k] = static_cast<scalar_t>(t);
    }
    r.w = wts != nullptr ? wts[p] : scalar_t(1);
    deposit<ORDER>(r, grid, range, 0, range.width);
  }
}

// NGP's cell of each particle of a block, in float32 where that is safely exact. With
// v = floor((x n / L + 1) 2^s) in float32 (2^s = the largest power of two <= 2^20 / n, so
// v < 2^21 and its rounding error stays below 1/2), the cell is (v >> s) - 1, and it is the
// float64 floor(x / h) unless the fraction v mod 2^s is 0 or 2^s - 1 (u within 2^-s of a cell
// edge) or the cell is outside [0, n) (a position outside the box); those few particles take
// the float64 path of csrc/common/paint.h. The block's 3 len coordinates are one contiguous
// array and the loop has no branch, so it vectorises.
constexpr int64_t kNgpBlock = 64;

struct NgpFastPath {
  float inv, one, top;  // n / L 2^s, 2^s, (n + 1) 2^s
  int32_t shift;        // s
  uint32_t n, mask;     // 2^s - 1
};

inline NgpFastPath make_ngp_fast_path(const GridSpec& g) {
  int32_t s = 0;
  while ((g.n << (s + 1)) <= (int64_t{1} << 20)) ++s;
  const double one = std::ldexp(1.0, s);
  return NgpFastPath{static_cast<float>(g.inv_h * one), static_cast<float>(one),
                     static_cast<float>((static_cast<double>(g.n) + 1.0) * one), s,
                     static_cast<uint32_t>(g.n), static_cast<uint32_t>((1u << s) - 1)};
}

template <typename scalar_t>
inline void ngp_block_cells(const scalar_t* x, int64_t count, const NgpFastPath& f, int32_t* v) {
  for (int64_t k = 0; k < count; ++k) {
    // clamped to [0, (n + 1) 2^s]: truncation is floor, and huge or negative values castable
    v[k] = static_cast<int32_t>(
        std::max(0.0f, std::min(static_cast<float>(x[k]) * f.inv + f.one, f.top)));
  }
}

// The cells of one particle from its three v; false where the float64 path must decide.
inline bool ngp_fast_cells(const int32_t* v, const NgpFastPath& f, int64_t* cell) {
  bool ok = f.mask >= 2;
  for (int d = 0; d < 3; ++d) {
    const uint32_t frac = static_cast<uint32_t>(v[d]) & f.mask;
    cell[d] = (v[d] >> f.shift) - 1;
    ok &= (static_cast<uint64_t>(cell[d]) < f.n) & (frac - 1 < f.mask - 1);
  }
  return ok;
}

// NGP over the slabs of `range`: one random update per particle, straight into the grid.
template <typename scalar_t>
void paint_range_ngp(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                     const GridSpec& g, const SlabRange& range) {
  const int64_t n = g.n;
  const NgpFastPath f = make_ngp_fast_path(g);
  int32_t v[3 * kNgpBlock];
  int64_t index[kNgpBlock], which[kNgpBlock];
  for (int64_t b = 0; b < num; b += kNgpBlock) {
    const int64_t len = std::min(kNgpBlock, num - b);
    ngp_block_cells(pos + 3 * b, 3 * len, f, v);
    // the owned particles (from the fast x cell, or x's float64 path where that is unsure;
    // which ones a thread owns is unpredictable, so they are compacted without a branch),
    // then their cells, prefetched together so that the block's cache misses overlap, then
    // the updates, in particle order
    int64_t count = 0;
    for (int64_t j = 0; j < len; ++j) {
      int64_t ix = (v[3 * j] >> f.shift) - 1;
      const uint32_t frac = static_cast<uint32_t>(v[3 * j]) & f.mask;
      if (!((static_cast<uint64_t>(ix) < f.n) & (frac - 1 < f.mask - 1) & (f.mask >= 2))) {
        double t;
        locate_axis<1>(pos, b + j, 0, g, &ix, &t);
      }
      which[count] = j;
      count += range.offset(ix) < range.width;
    }
    for (int64_t k = 0; k < count; ++k) {
      const int64_t j = which[k];
      int64_t cell[3];
      if (!ngp_fast_cells(v + 3 * j, f, cell)) {
        double t;
        for (int d = 0; d < 3; ++d) locate_axis<1>(pos, b + j, d, g, &cell[d], &t);
      }
      index[k] = (cell[0] * n + cell[1]) * n + cell[2];
      which[k] = b + j;
    }
    for (int64_t k = 0; k < count; ++k) __builtin_prefetch(grid + index[k], 1);
    if (wts == nullptr) {
      for (int64_t k = 0; k < count; ++k) grid[index[k]] += scalar_t(1);
    } else {
      for (int64_t k = 0; k < count; ++k) grid[index[k]] += wts[which[k]];
    }
  }
}

// NGP on several threads, in two phases per chunk of particles: (1) every particle's cell
// (its linear index), the particles split between the threads; (2) owner-computes on those
// indices: each thread reads them all (4 or 8 bytes a particle, not the positions again) and
// updates the cells of its own slabs, in particle order. Extra memory: one index per particle
// of a chunk, at most one grid.
template <typename scalar_t, typename index_t>
void paint_ngp_parallel(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                        const GridSpec& g, const std::vector<int64_t>& bounds) {
  const int64_t n = g.n, parts = static_cast<int64_t>(bounds.size()) - 1;
  const int64_t grid_bytes = n * n * n * int64_t{sizeof(scalar_t)};
  const int64_t chunk = std::clamp<int64_t>(grid_bytes / int64_t{sizeof(index_t)},
                                            kNgpBlock * 64, num);
  std::unique_ptr<index_t[]> cells(new index_t[chunk]);
  const NgpFastPath f = make_ngp_fast_path(g);
  for (int64_t start = 0; start < num; start += chunk) {
    const int64_t len = std::min(chunk, num - start);
    const scalar_t* cpos = pos + 3 * start;
    at::parallel_for(0, (len + kNgpBlock - 1) / kNgpBlock, 64, [&](int64_t b0, int64_t b1) {
      int32_t v[3 * kNgpBlock];
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t b = blk * kNgpBlock, bl = std::min(kNgpBlock, len - b);
        ngp_block_cells(cpos + 3 * b, 3 * bl, f, v);
        for (int64_t j = 0; j < bl; ++j) {
          int64_t cell[3];
          if (!ngp_fast_cells(v + 3 * j, f, cell)) {
            double t;
            for (int d = 0; d < 3; ++d) locate_axis<1>(cpos, b + j, d, g, &cell[d], &t);
          }
          cells[b + j] = static_cast<index_t>((cell[0] * n + cell[1]) * n + cell[2]);
        }
      }
    });
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      int64_t which[kNgpBlock];
      for (int64_t t = t0; t < t1; ++t) {
        const uint64_t lo = static_cast<uint64_t>(bounds[t] * n * n);
        const uint64_t width = static_cast<uint64_t>((bounds[t + 1] - bounds[t]) * n * n);
        if (width == 0) continue;
        for (int64_t b = 0; b < len; b += kNgpBlock) {
          const int64_t bl = std::min(kNgpBlock, len - b);
          int64_t count = 0;
          for (int64_t j = 0; j < bl; ++j) {  // owned ones, compacted without a branch
            which[count] = b + j;
            count += static_cast<uint64_t>(cells[b + j]) - lo < width;
          }
          for (int64_t k = 0; k < count; ++k) __builtin_prefetch(grid + cells[which[k]], 1);
          if (wts == nullptr) {
            for (int64_t k = 0; k < count; ++k) grid[cells[which[k]]] += scalar_t(1);
          } else {
            for (int64_t k = 0; k < count; ++k)
              grid[cells[which[k]]] += wts[start + which[k]];
          }
        }
      }
    });
  }
}

// One thread's share: the parts of all particles' stencils in its slabs, bucket by bucket.
template <int ORDER, typename scalar_t>
void paint_range(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                 const GridSpec& g, const SlabRange& range, int64_t capacity) {
  const int64_t n = g.n, groups = range.groups();
  // uninitialised (every entry is written before it is read): zeroing them would cost as
  // much as a pass over the grid
  std::unique_ptr<Record<scalar_t, ORDER>[]> records(new Record<scalar_t, ORDER>[capacity]);
  std::unique_ptr<Listing[]> listed(new Listing[capacity]);
  std::vector<int64_t> start(groups + 1);
  int64_t p = 0;
  while (p < num) {
    // 1. scan x until the buffer is full: the owned particles and their buckets
    std::fill(start.begin(), start.end(), 0);
    int64_t owned = 0, entries = 0;
    const int64_t chunk_begin = p, scan_end = std::min(num, p + (int64_t{1} << 30));
    for (; p < scan_end && entries + 2 <= capacity; ++p) {
      int64_t i0;
      double t;
      locate_axis<ORDER>(pos, p, 0, g, &i0, &t);
      const int64_t d = range.offset(i0);
      if (!(d < range.width || d + ORDER - 1 >= n)) continue;  // no owned slab
      Listing l{static_cast<int32_t>(p - chunk_begin), {kNoGroup, kNoGroup}};
      int k = 0;
      for (int a = 0; a < ORDER; ++a) {
        const int64_t off = range.offset(wrap_index(i0 + a, n));
        if (off >= range.width) continue;
        const uint16_t grp = static_cast<uint16_t>(off / range.span);
        if (k == 0 || l.group[k - 1] != grp) l.group[k++] = grp;
      }
      if (k == 0) continue;
      for (int j = 0; j < k; ++j) ++start[l.group[j] + 1];
      entries += k;
      listed[owned++] = l;
    }
    for (int64_t grp = 0; grp < groups; ++grp) start[grp + 1] += start[grp];
    // 2. locate the owned particles into their buckets, in particle order
    std::vector<int64_t>& cursor = start;  // advanced to each bucket's end, then shifted back
    for (int64_t j = 0; j < owned; ++j) {
      const Listing& l = listed[j];
      Record<scalar_t, ORDER> r;
      make_record<ORDER>(pos, wts, chunk_begin + l.p, g, &r);
      records[cursor[l.group[0]]++] = r;
      if (l.group[1] != kNoGroup) records[cursor[l.group[1]]++] = r;
    }
    for (int64_t grp = groups; grp > 0; --grp) start[grp] = start[grp - 1];
    start[0] = 0;
    // 3. paint bucket by bucket
    for (int64_t grp = 0; grp < groups; ++grp) {
      const int64_t first = grp * range.span, last = std::min(range.width, first + range.span);
      for (int64_t j = start[grp]; j < start[grp + 1]; ++j)
        deposit<ORDER>(records[j], grid, range, first, last);
    }
  }
}

// Slab ranges, one per part, balanced on the deposits of a sample of the particles:
// bounds[0] = 0 <= ... <= bounds[parts] = n.
template <int ORDER, typename scalar_t>
std::vector<int64_t> balanced_ranges(const scalar_t* pos, int64_t num, const GridSpec& g,
                                     int64_t parts) {
  const int64_t n = g.n;
  std::vector<int64_t> load(n, 1);  // every slab costs something
  const int64_t stride = std::max<int64_t>(1, num / kSample);
  int64_t total = n;
  for (int64_t p = 0; p < num; p += stride) {
    int64_t i0;
    double t;
    locate_axis<ORDER>(pos, p, 0, g, &i0, &t);
    for (int a = 0; a < ORDER; ++a) load[wrap_index(i0 + a, n)] += 16;
    total += 16 * ORDER;
  }
  std::vector<int64_t> bounds(parts + 1, n);
  bounds[0] = 0;
  int64_t acc = 0, k = 1;
  for (int64_t s = 0; s < n && k < parts; ++s) {
    acc += load[s];
    while (k < parts && acc * parts >= total * k) bounds[k++] = s + 1;
  }
  return bounds;
}

template <int ORDER, typename scalar_t>
void paint_kernel(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                  const GridSpec& g) {
  const int64_t n = g.n;
  if (num < kDirectThreshold) {
    if constexpr (ORDER == 1) {
      paint_range_ngp(pos, wts, num, grid, g, SlabRange{0, n, n, n});
    } else {
      paint_range_direct<ORDER>(pos, wts, num, grid, g, SlabRange{0, n, n, n});
    }
    return;
  }
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  const std::vector<int64_t> bounds = balanced_ranges<ORDER>(pos, num, g, parts);
  if constexpr (ORDER == 1) {
    if (parts > 1) {
      if (n * n * n < (int64_t{1} << 31)) {
        paint_ngp_parallel<scalar_t, uint32_t>(pos, wts, num, grid, g, bounds);
      } else {
        paint_ngp_parallel<scalar_t, uint64_t>(pos, wts, num, grid, g, bounds);
      }
      return;
    }
  }
  // the record buffers of all threads take at most one grid (see the top of the file)
  const int64_t grid_bytes = n * n * n * int64_t{sizeof(scalar_t)};
  const int64_t per_record = sizeof(Record<scalar_t, ORDER>) + sizeof(Listing);
  const int64_t capacity = std::clamp<int64_t>(grid_bytes / (parts * per_record), kMinRecords,
                                               std::min(kMaxRecords, 2 * num + 2));
  const int64_t slab_bytes = n * n * int64_t{sizeof(scalar_t)};
  at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t width = bounds[t + 1] - bounds[t];
      if (width == 0) continue;
      if constexpr (ORDER == 1) {
        paint_range_ngp(pos, wts, num, grid, g, SlabRange{bounds[t], width, width, n});
        continue;
      }
      if (width * slab_bytes <= 2 * kGroupBytes) {  // the range stays in cache as it is
        paint_range_direct<ORDER>(pos, wts, num, grid, g, SlabRange{bounds[t], width, width, n});
        continue;
      }
      int64_t span = std::max<int64_t>(2, kGroupBytes / slab_bytes);
      span = std::max(span, (width + kMaxGroups - 1) / kMaxGroups);
      paint_range<ORDER>(pos, wts, num, grid, g, SlabRange{bounds[t], width, span, n}, capacity);
    }
  });
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
  // Asks for transparent huge pages before the first touch: random updates of a large grid
  // otherwise miss the TLB on nearly every particle. Only a hint; without it nothing changes.
  at::Tensor grid = at::empty({n, n, n}, positions.options());
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  {
    const uintptr_t a = reinterpret_cast<uintptr_t>(grid.data_ptr());
    const uintptr_t b = (a + (1 << 21) - 1) & ~uintptr_t((1 << 21) - 1);
    const uintptr_t e = (a + grid.nbytes()) & ~uintptr_t((1 << 21) - 1);
    if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);
  }
#endif
  grid.zero_();
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
