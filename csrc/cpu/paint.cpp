// CPU paint / readout. See csrc/common/paint.h for the maths and conventions.
//
// Painting scatters into a shared grid, so threads must not race. Owner-computes: the grid's
// x-slabs are split into one contiguous range per thread (balanced on a sample of the
// particles, since clustered catalogues fill some slabs far more than others), and each thread
// deposits only the parts of the stencils that fall in its own slabs (a CIC or TSC stencil
// that straddles two ranges is painted half by each owner). Every cell is written by one
// thread only, and always in particle order, so the result is the serial loop's bit for bit,
// whatever the number of threads, the strategy or where the ranges fall: every path weighs a
// particle the same way (weights_block) and takes the products in the same order (deposit).
// An owner need not read every particle: a first parallel pass marks, per block of kBlock
// particles, which owners its stencils may reach (block_owner_masks, a superset), and each
// owner reads only its blocks, painting in full those that are its alone. For a snapshot in
// file order (for most codes the order of the initial lattice, which z = 0 still mostly
// keeps) that is about its share of the particles.
//
// NGP touches one cell per particle and paints straight into the grid (the grid we allocate
// asks for huge pages, so random updates do not miss the TLB as well as the cache); on several
// threads the cells are first located in parallel with each block's owners, and the owners
// update from those indices, skipping the blocks that are not theirs (paint_ngp_parallel).
//
// CIC and TSC touch 8 and 27 cells, and how they are best painted depends on the order of the
// particles, which a probe of a sample decides (choose_strategy); NGP likewise:
//  - direct: each owner paints its particles one at a time, straight into the grid. Fastest
//    when consecutive particles land near each other (a snapshot in file order, or one sorted
//    along a space-filling curve), or, on one thread (and for NGP), when the catalogue fills
//    little of the grid: the writes hit the cache as they are. A compact catalogue in no
//    particular order has particles of every owner in every block, so each CIC/TSC owner
//    would read them all: on several threads it is bucketed.
//  - buckets: within its range an owner takes its particles a chunk at a time, buckets them (a
//    counting sort) into groups of a few slabs, about kGroupBytes of grid each, and paints
//    group by group, so its writes stay in cache however the particles are ordered (a shuffled
//    snapshot); a particle whose stencil spans two groups is listed in both and paints each
//    group's cells there, so each cell still sees its particles in order.
// LSSCORE_PAINT_STRATEGY=direct|buckets (environment) forces one, for tests and benchmarks.
//
// Extra memory: at most the size of the grid (NGP: an index per particle of a chunk; buckets: a
// record buffer per thread, at least kMinRecords records each for tiny grids); no copy of the
// grid.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../common/paint.h"
#include "../common/paint_checks.h"

// the per-particle helpers of the hot loops, inlined whatever the compiler's estimate
#define LSS_INLINE inline __attribute__((always_inline))

namespace lss {
namespace {

constexpr int64_t kDirectThreshold = int64_t{1} << 14;  // fewer particles: one direct loop
constexpr int64_t kMinRecords = int64_t{1} << 14;       // records per thread: at least,
constexpr int64_t kMaxRecords = int64_t{1} << 22;       // at most
constexpr int64_t kGroupBytes = int64_t{1} << 21;       // grid bytes per bucket, about
constexpr int64_t kSample = int64_t{1} << 16;           // particles sampled to balance ranges

// ---------------------------------------------------------------------------- CIC and TSC

// i in [0, 3n) wrapped into [0, n), without a loop (a stencil's cells are i0 + a, a < 3).
LSS_INLINE int64_t wrap3(int64_t i, int64_t n) {
  i -= i >= n ? n : 0;
  i -= i >= n ? n : 0;
  return i;
}

// One axis of a particle: its first cell i0 (in [0, n)) and its offset t, rounded to the
// grid's type (records keep t so; every path rounds it alike).
template <int ORDER, typename scalar_t>
LSS_INLINE int64_t locate_axis(scalar_t x, const GridSpec& g, scalar_t* t) {
  int64_t i0;
  double td;
  locate<ORDER>(cell_coordinate<false>(static_cast<double>(x), g), g.n, &i0, &td);
  *t = static_cast<scalar_t>(td);
  return i0;
}

// Whether a stencil from x-plane i0 reaches a slab of [lo, lo + width) (going round the box).
template <int ORDER>
LSS_INLINE bool touches(int64_t i0, int64_t n, int64_t lo, int64_t width) {
  int64_t d = i0 - lo;
  d += d < 0 ? n : 0;
  return d < width || d + ORDER - 1 >= n;
}

// Adds one particle to the cells of its stencil (first cells i0, per-axis weights w, the mass
// already in w[0]) that lie in the x-planes [lo, lo + width), or in all of them (ALL), in the
// serial loop's order: x, then y, then z. The products are taken in the grid's type.
template <int ORDER, bool ALL, typename scalar_t>
LSS_INLINE void deposit(const int64_t i0[3], const scalar_t w[3][ORDER], scalar_t* grid, int64_t n,
                    int64_t lo, int64_t width) {
  int64_t x[ORDER], y[ORDER], z[ORDER];
  for (int c = 0; c < ORDER; ++c) {
    x[c] = wrap3(i0[0] + c, n);
    y[c] = wrap3(i0[1] + c, n) * n;
    z[c] = wrap3(i0[2] + c, n);
  }
  for (int a = 0; a < ORDER; ++a) {
    if (!ALL && static_cast<uint64_t>(x[a] - lo) >= static_cast<uint64_t>(width)) continue;
    scalar_t* plane = grid + x[a] * n * n;
    for (int b = 0; b < ORDER; ++b) {
      scalar_t* row = plane + y[b];
      const scalar_t wab = w[0][a] * w[1][b];
      for (int c = 0; c < ORDER; ++c) row[z[c]] += wab * w[2][c];
    }
  }
}

// Locates `count` coordinates (a block's x, y, z, as the positions store them): first cells i0
// and offsets t, exactly as locate_axis. With SSE2, two at a time in the same float64
// operations for coordinates inside [0, L) (there u >= -1/2 and a truncation is the floor or
// one above it, and i >= n cannot occur); those outside the box, rare, one at a time after.
constexpr int64_t kBlock = 64;  // particles located at a time

template <int ORDER, typename scalar_t>
LSS_INLINE void locate_block(const scalar_t* x, int64_t count, const GridSpec& g, int32_t* i0,
                                scalar_t* t) {
  int64_t k = 0;
#if defined(__SSE2__)
  const __m128d zero = _mm_setzero_pd(), one = _mm_set1_pd(1.0), half = _mm_set1_pd(0.5);
  const __m128d box = _mm_set1_pd(g.box_size), inv_h = _mm_set1_pd(g.inv_h);
  const __m128d cells = _mm_set1_pd(static_cast<double>(g.n));
  const __m128d last = _mm_set1_pd(static_cast<double>(g.n - 1));
  __m128d outside = zero;
  for (; k + 2 <= count; k += 2) {
    __m128d xd;
    if constexpr (sizeof(scalar_t) == 4) {
      xd = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x + k))));
    } else {
      xd = _mm_loadu_pd(reinterpret_cast<const double*>(x + k));
    }
    outside = _mm_or_pd(outside, _mm_or_pd(_mm_cmplt_pd(xd, zero), _mm_cmpge_pd(xd, box)));
    const __m128d u = _mm_mul_pd(xd, inv_h);
    __m128d first, off;
    if constexpr (ORDER == 2) {  // s = u - 1/2, i = floor(s), f = s - i, i0 = i (+ n if < 0)
      const __m128d s = _mm_sub_pd(u, half);
      __m128d i = _mm_cvtepi32_pd(_mm_cvttpd_epi32(s));
      i = _mm_sub_pd(i, _mm_and_pd(_mm_cmplt_pd(s, i), one));
      off = _mm_sub_pd(s, i);
      first = _mm_add_pd(i, _mm_and_pd(_mm_cmplt_pd(i, zero), cells));
    } else {  // i = min(floor(u), n - 1), d = u - i - 1/2, i0 = i - 1 (n - 1 if i = 0)
      const __m128d i = _mm_min_pd(_mm_cvtepi32_pd(_mm_cvttpd_epi32(u)), last);
      off = _mm_sub_pd(_mm_sub_pd(u, i), half);
      first = _mm_add_pd(_mm_sub_pd(i, one), _mm_and_pd(_mm_cmpeq_pd(i, zero), cells));
    }
    _mm_storel_epi64(reinterpret_cast<__m128i*>(i0 + k), _mm_cvttpd_epi32(first));
    if constexpr (sizeof(scalar_t) == 4) {
      _mm_storel_pi(reinterpret_cast<__m64*>(t + k), _mm_cvtpd_ps(off));
    } else {
      _mm_storeu_pd(reinterpret_cast<double*>(t + k), off);
    }
  }
  if (_mm_movemask_pd(outside) != 0) {
    for (int64_t j = 0; j < k; ++j) {
      const double xj = static_cast<double>(x[j]);
      if (!(xj >= 0.0 && xj < g.box_size))
        i0[j] = static_cast<int32_t>(locate_axis<ORDER>(x[j], g, &t[j]));
    }
  }
#endif
  for (; k < count; ++k) i0[k] = static_cast<int32_t>(locate_axis<ORDER>(x[k], g, &t[k]));
}

// The ORDER weights (paint.h's stencil_weights) of `count` offsets, in float64 from the offset
// in the grid's type, rounded once to it; as flat arrays w[c][k] (a loop the compiler
// vectorises). Every path weighs particles here, so all agree bit for bit.
template <int ORDER, typename scalar_t>
LSS_INLINE void weights_block(const scalar_t* t, int64_t count, scalar_t (*w)[3 * kBlock]) {
  for (int64_t k = 0; k < count; ++k) {
    const double td = static_cast<double>(t[k]);
    if constexpr (ORDER == 2) {
      w[0][k] = static_cast<scalar_t>(1.0 - td);
      w[1][k] = static_cast<scalar_t>(td);
    } else {
      const double a = 0.5 - td, b = 0.5 + td;
      w[0][k] = static_cast<scalar_t>(0.5 * a * a);
      w[1][k] = static_cast<scalar_t>(0.75 - td * td);
      w[2][k] = static_cast<scalar_t>(0.5 * b * b);
    }
  }
}

// Prefetches (for writing) the first cache line of each row of a particle's stencil: a block's
// cache misses then overlap instead of stalling one deposit after another.
template <int ORDER, typename scalar_t>
LSS_INLINE void prefetch_stencil(const int32_t* i0, const scalar_t* grid, int64_t n) {
  for (int a = 0; a < ORDER; ++a) {
    const scalar_t* plane = grid + wrap3(i0[0] + a, n) * n * n + i0[2];
    for (int b = 0; b < ORDER; ++b) __builtin_prefetch(plane + wrap3(i0[1] + b, n) * n, 1);
  }
}

// Prefetches (for reading) the positions of the block after next: the hardware streams a
// sequential read, but not far enough ahead to hide the memory's latency on every machine.
template <typename scalar_t>
LSS_INLINE void prefetch_ahead(const scalar_t* coords, int64_t first, int64_t count) {
  constexpr int64_t kAhead = 2 * 3 * 64;  // coordinates: two blocks of 64 particles
  const int64_t begin = first + kAhead, end = std::min(count, begin + 3 * 64);
  for (int64_t k = begin; k < end; k += 64 / int64_t{sizeof(scalar_t)})
    __builtin_prefetch(coords + k, 0);
}

// One block of particles [b, b + len), straight into the grid: all of each stencil (ALL), or
// its part in the slabs [lo, lo + width).
template <int ORDER, bool ALL, typename scalar_t>
LSS_INLINE void paint_block(const scalar_t* pos, const scalar_t* wts, int64_t num, int64_t b,
                            int64_t len, scalar_t* grid, const GridSpec& g, int64_t lo,
                            int64_t width) {
  const int64_t n = g.n;
  int32_t i0[3 * kBlock];
  scalar_t t[3 * kBlock], w[ORDER][3 * kBlock];
  prefetch_ahead(pos, 3 * b, 3 * num);
  locate_block<ORDER>(pos + 3 * b, 3 * len, g, i0, t);
  for (int64_t j = 0; j < len; ++j) prefetch_stencil<ORDER>(i0 + 3 * j, grid, n);
  weights_block<ORDER>(t, 3 * len, w);
  for (int64_t j = 0; j < len; ++j) {
    if (!ALL && !touches<ORDER>(i0[3 * j], n, lo, width)) continue;
    const int64_t first[3] = {i0[3 * j], i0[3 * j + 1], i0[3 * j + 2]};
    const scalar_t mass = wts != nullptr ? wts[b + j] : scalar_t(1);
    scalar_t wj[3][ORDER];
    for (int c = 0; c < ORDER; ++c) {
      wj[0][c] = mass * w[c][3 * j];
      wj[1][c] = w[c][3 * j + 1];
      wj[2][c] = w[c][3 * j + 2];
    }
    deposit<ORDER, ALL>(first, wj, grid, n, lo, width);
  }
}

// Particles [begin, end), a block at a time, straight into the grid: the serial loop that every
// other path reproduces (ALL: every cell of every stencil).
template <int ORDER, typename scalar_t>
void paint_all(const scalar_t* pos, const scalar_t* wts, int64_t begin, int64_t end,
               scalar_t* grid, const GridSpec& g) {
  for (int64_t b = begin; b < end; b += kBlock)
    paint_block<ORDER, true>(pos, wts, end, b, std::min(kBlock, end - b), grid, g, 0, g.n);
}

// Which owners' slabs the stencils of each block of kBlock particles may reach: a bit per
// owner (owner t is bit t mod 64), a superset. A block's bits are those of the owners of the
// planes within 2 of floor(x n / L) of each of its particles (a CIC or TSC stencil spans the
// planes floor(u) - 1 .. floor(u) + 1, u = x n / L computed as locate does; the margin is one
// plane more); every bit for a position outside the box. Computed once, in parallel, so that
// each owner then reads only the blocks it paints: with particles in file order, about its
// share of them instead of all.
template <typename scalar_t>
std::vector<uint64_t> block_owner_masks(const scalar_t* pos, int64_t num, const GridSpec& g,
                                        const std::vector<int64_t>& bounds) {
  const int64_t n = g.n, parts = static_cast<int64_t>(bounds.size()) - 1;
  std::vector<uint64_t> owner(n), near(n);
  uint64_t every = 0;
  for (int64_t t = 0; t < parts; ++t) {
    for (int64_t p = bounds[t]; p < bounds[t + 1]; ++p) owner[p] = uint64_t{1} << (t % 64);
    if (bounds[t + 1] > bounds[t]) every |= uint64_t{1} << (t % 64);
  }
  for (int64_t p = 0; p < n; ++p) {
    uint64_t m = 0;
    for (int64_t d = -2; d <= 2; ++d) m |= owner[((p + d) % n + n) % n];
    near[p] = m;
  }
  const int64_t blocks = (num + kBlock - 1) / kBlock;
  std::vector<uint64_t> masks(blocks);
  const double cells = static_cast<double>(n);
  at::parallel_for(0, blocks, 256, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t first = blk * kBlock, last = std::min(num, first + kBlock);
      uint64_t m = 0;
      bool outside = false;
      for (int64_t p = first; p < last; ++p) {
        const double u = static_cast<double>(pos[3 * p]) * g.inv_h;
        const bool in = u >= 0.0 && u < cells;
        outside |= !in;
        m |= near[in ? static_cast<int64_t>(u) : 0];
      }
      masks[blk] = outside ? every : m;
    }
  });
  return masks;
}

// An owner's share: the blocks whose masks have its bit, each painted in full where only its
// bit is set (every stencil in its slabs, parts <= 64), else in its slabs [lo, lo + width).
template <int ORDER, typename scalar_t>
void paint_owned(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                 const GridSpec& g, const std::vector<uint64_t>& masks, int64_t owner,
                 int64_t parts, int64_t lo, int64_t width) {
  const uint64_t bit = uint64_t{1} << (owner % 64);
  const bool exclusive = parts <= 64;
  for (int64_t blk = 0; blk < static_cast<int64_t>(masks.size()); ++blk) {
    const uint64_t m = masks[blk];
    if ((m & bit) == 0) continue;
    const int64_t b = blk * kBlock, len = std::min(kBlock, num - b);
    if (exclusive && m == bit) {
      paint_block<ORDER, true>(pos, wts, num, b, len, grid, g, lo, width);
    } else {
      paint_block<ORDER, false>(pos, wts, num, b, len, grid, g, lo, width);
    }
  }
}

// A located particle, as the buckets keep it: first cells, offsets, mass.
template <typename scalar_t>
struct Record {
  int32_t i0[3];
  scalar_t t[3];
  scalar_t w;
};

// A group's records [begin, end), a block at a time, into the slabs [lo, lo + width): their
// weights as paint_block's (weights_block), then deposited.
template <int ORDER, typename scalar_t>
void paint_records(const Record<scalar_t>* records, int64_t begin, int64_t end, scalar_t* grid,
                   int64_t n, int64_t lo, int64_t width) {
  scalar_t t[3 * kBlock], w[ORDER][3 * kBlock];
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t len = std::min(kBlock, end - b);
    for (int64_t j = 0; j < len; ++j) {
      for (int d = 0; d < 3; ++d) t[3 * j + d] = records[b + j].t[d];
      prefetch_stencil<ORDER>(records[b + j].i0, grid, n);
    }
    weights_block<ORDER>(t, 3 * len, w);
    for (int64_t j = 0; j < len; ++j) {
      const Record<scalar_t>& r = records[b + j];
      const int64_t first[3] = {r.i0[0], r.i0[1], r.i0[2]};
      scalar_t wj[3][ORDER];
      for (int c = 0; c < ORDER; ++c) {
        wj[0][c] = r.w * w[c][3 * j];
        wj[1][c] = w[c][3 * j + 1];
        wj[2][c] = w[c][3 * j + 2];
      }
      deposit<ORDER, false>(first, wj, grid, n, lo, width);
    }
  }
}

// The slab groups of the counting sort: `span` slabs each (at least 2), the last one taking
// the remainder, so that no group has fewer than 2 slabs (or all n) and a stencil (at most 3
// consecutive planes, going round the box) reaches at most two groups.
struct SlabGroups {
  int64_t n, span, count;
  std::vector<int32_t> group;  // of each slab (a table: no division per particle)
  int64_t of(int64_t plane) const { return group[plane]; }
  int64_t first(int64_t grp) const { return grp * span; }
  int64_t end(int64_t grp) const { return grp == count - 1 ? n : (grp + 1) * span; }
};

inline SlabGroups make_slab_groups(int64_t n, int64_t span) {
  span = std::max<int64_t>(span, 2);
  SlabGroups sg{n, span, std::max<int64_t>(1, n / span), std::vector<int32_t>(n)};
  for (int64_t s = 0; s < n; ++s) sg.group[s] = static_cast<int32_t>(std::min(s / span, sg.count - 1));
  return sg;
}

// The counting sort's offsets: counts[t * groups + grp] (part t's entries in group grp) becomes
// part t's first place in group grp, the groups in order and the parts in order within a group
// (so every group lists its entries in particle order); group_start[grp] is where group grp
// begins, group_start[groups] the total.
inline void group_offsets(std::vector<int64_t>& counts, int64_t parts, int64_t groups,
                          std::vector<int64_t>* group_start) {
  int64_t acc = 0;
  for (int64_t grp = 0; grp < groups; ++grp) {
    (*group_start)[grp] = acc;
    for (int64_t t = 0; t < parts; ++t) {
      const int64_t c = counts[t * groups + grp];
      counts[t * groups + grp] = acc;
      acc += c;
    }
  }
  (*group_start)[groups] = acc;
}

// Contiguous runs of groups, one per part, with about equal numbers of entries:
// runs[0] = 0 <= ... <= runs[parts] = groups.
inline std::vector<int64_t> balanced_runs(const std::vector<int64_t>& group_start,
                                          int64_t parts) {
  const int64_t groups = static_cast<int64_t>(group_start.size()) - 1;
  const int64_t total = group_start[groups];
  std::vector<int64_t> runs(parts + 1, groups);
  runs[0] = 0;
  int64_t k = 1;
  for (int64_t grp = 0; grp < groups && k < parts; ++grp) {
    while (k < parts && group_start[grp + 1] * parts >= total * k) runs[k++] = grp + 1;
  }
  return runs;
}

// CIC/TSC by a parallel counting sort, chunk by chunk of the particles: (1) the particles of
// the chunk, split between the threads, count their entries per slab group (a stencil that
// reaches two groups is an entry in each); (2) each thread locates its particles into records
// at its place in each group, so that every group lists its particles in particle order;
// (3) the groups, in runs balanced on their entries, are painted group by group, each record
// only in its group's slabs. Every cell is in one group and sees its particles in order: the
// serial loop's result, at any thread count. Each particle is located by one thread only.
template <int ORDER, typename scalar_t>
void paint_sorted(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                  const GridSpec& g, const SlabGroups& sg, int64_t parts, int64_t capacity) {
  const int64_t n = g.n, groups = sg.count;
  // uninitialised (every entry is written before it is read): zeroing them would cost as
  // much as a pass over the grid
  std::unique_ptr<Record<scalar_t>[]> records(new Record<scalar_t>[capacity]);
  std::vector<int64_t> counts(parts * groups), group_start(groups + 1);
  const int64_t chunk = capacity / 2;  // at most two entries per particle
  for (int64_t begin = 0; begin < num; begin += chunk) {
    const int64_t len = std::min(chunk, num - begin);
    auto part_begin = [&](int64_t t) { return begin + len * t / parts; };
    // 1. entries per part and group
    std::fill(counts.begin(), counts.end(), 0);
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t* cnt = counts.data() + t * groups;
        scalar_t x[kBlock], tx[kBlock];
        int32_t i0[kBlock];
        const int64_t e = part_begin(t + 1);
        for (int64_t b = part_begin(t); b < e; b += kBlock) {
          const int64_t len = std::min(kBlock, e - b);
          for (int64_t j = 0; j < len; ++j) x[j] = pos[3 * (b + j)];
          locate_block<ORDER>(x, len, g, i0, tx);
          for (int64_t j = 0; j < len; ++j) {
            const int64_t g0 = sg.of(i0[j]), g1 = sg.of(wrap3(i0[j] + ORDER - 1, n));
            ++cnt[g0];
            cnt[g1] += g1 != g0;
          }
        }
      }
    });
    group_offsets(counts, parts, groups, &group_start);
    // 2. the records, in place
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t* cursor = counts.data() + t * groups;
        int32_t i0[3 * kBlock];
        scalar_t tb[3 * kBlock];
        const int64_t e = part_begin(t + 1);
        for (int64_t b = part_begin(t); b < e; b += kBlock) {
          const int64_t len = std::min(kBlock, e - b);
          locate_block<ORDER>(pos + 3 * b, 3 * len, g, i0, tb);
          for (int64_t j = 0; j < len; ++j) {
            Record<scalar_t> r;
            for (int d = 0; d < 3; ++d) {
              r.i0[d] = i0[3 * j + d];
              r.t[d] = tb[3 * j + d];
            }
            r.w = wts != nullptr ? wts[b + j] : scalar_t(1);
            const int64_t g0 = sg.of(r.i0[0]), g1 = sg.of(wrap3(r.i0[0] + ORDER - 1, n));
            records[cursor[g0]++] = r;
            if (g1 != g0) records[cursor[g1]++] = r;
          }
        }
      }
    });
    // 3. group by group, in balanced runs
    const std::vector<int64_t> runs = balanced_runs(group_start, parts);
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        for (int64_t grp = runs[t]; grp < runs[t + 1]; ++grp) {
          const int64_t first = sg.first(grp), width = sg.end(grp) - first;
          paint_records<ORDER>(records.get(), group_start[grp], group_start[grp + 1], grid, n,
                               first, width);
        }
      }
    });
  }
}

// ---------------------------------------------------------------------------- NGP

// NGP's cell of one coordinate, in float64 (numpy.histogramdd's floor(x / h)).
template <typename scalar_t>
inline int64_t ngp_cell(scalar_t x, const GridSpec& g) {
  return cell_index(cell_coordinate<true>(static_cast<double>(x), g), g.n);
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

// NGP over the slabs [lo, lo + width): one random update per particle, straight into the grid.
template <typename scalar_t>
void paint_range_ngp(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                     const GridSpec& g, int64_t lo, int64_t width) {
  const int64_t n = g.n;
  const NgpFastPath f = make_ngp_fast_path(g);
  int32_t v[3 * kNgpBlock];
  int64_t index[kNgpBlock], which[kNgpBlock];
  for (int64_t b = 0; b < num; b += kNgpBlock) {
    const int64_t len = std::min(kNgpBlock, num - b);
    prefetch_ahead(pos, 3 * b, 3 * num);
    ngp_block_cells(pos + 3 * b, 3 * len, f, v);
    // the owned particles (from the fast x cell, or x's float64 path where that is unsure;
    // which ones a thread owns is unpredictable, so they are compacted without a branch),
    // then their cells, prefetched together so that the block's cache misses overlap, then
    // the updates, in particle order
    int64_t count = 0;
    for (int64_t j = 0; j < len; ++j) {
      int64_t ix = (v[3 * j] >> f.shift) - 1;
      const uint32_t frac = static_cast<uint32_t>(v[3 * j]) & f.mask;
      if (!((static_cast<uint64_t>(ix) < f.n) & (frac - 1 < f.mask - 1) & (f.mask >= 2)))
        ix = ngp_cell(pos[3 * (b + j)], g);
      which[count] = j;
      count += static_cast<uint64_t>(ix - lo) < static_cast<uint64_t>(width);
    }
    for (int64_t k = 0; k < count; ++k) {
      const int64_t j = which[k];
      int64_t cell[3];
      if (!ngp_fast_cells(v + 3 * j, f, cell))
        for (int d = 0; d < 3; ++d) cell[d] = ngp_cell(pos[3 * (b + j) + d], g);
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
  // the owners of each block's cells (a bit per owner, t mod 64): an owner skips the blocks
  // without its bit, and updates those with its bit alone without testing each cell
  std::vector<uint64_t> owner(n), masks((chunk + kNgpBlock - 1) / kNgpBlock);
  for (int64_t t = 0; t < parts; ++t)
    for (int64_t p = bounds[t]; p < bounds[t + 1]; ++p) owner[p] = uint64_t{1} << (t % 64);
  const NgpFastPath f = make_ngp_fast_path(g);
  for (int64_t start = 0; start < num; start += chunk) {
    const int64_t len = std::min(chunk, num - start);
    const scalar_t* cpos = pos + 3 * start;
    at::parallel_for(0, (len + kNgpBlock - 1) / kNgpBlock, 64, [&](int64_t b0, int64_t b1) {
      int32_t v[3 * kNgpBlock];
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t b = blk * kNgpBlock, bl = std::min(kNgpBlock, len - b);
        prefetch_ahead(cpos, 3 * b, 3 * len);
        ngp_block_cells(cpos + 3 * b, 3 * bl, f, v);
        uint64_t m = 0;
        for (int64_t j = 0; j < bl; ++j) {
          int64_t cell[3];
          if (!ngp_fast_cells(v + 3 * j, f, cell))
            for (int d = 0; d < 3; ++d) cell[d] = ngp_cell(cpos[3 * (b + j) + d], g);
          cells[b + j] = static_cast<index_t>((cell[0] * n + cell[1]) * n + cell[2]);
          m |= owner[cell[0]];
        }
        masks[blk] = m;
      }
    });
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      int64_t which[kNgpBlock];
      for (int64_t t = t0; t < t1; ++t) {
        const uint64_t lo = static_cast<uint64_t>(bounds[t] * n * n);
        const uint64_t width = static_cast<uint64_t>((bounds[t + 1] - bounds[t]) * n * n);
        if (width == 0) continue;
        const uint64_t bit = uint64_t{1} << (t % 64);
        for (int64_t b = 0; b < len; b += kNgpBlock) {
          const int64_t bl = std::min(kNgpBlock, len - b);
          const uint64_t m = masks[b / kNgpBlock];
          if ((m & bit) == 0) continue;
          // the next block's cells, a block ahead when they are all this owner's, so that
          // its updates find them in cache (cells of other owners are not touched: that would
          // pull their lines away from the threads that write them)
          const int64_t next = b + kNgpBlock;
          if (next < len && masks[next / kNgpBlock] == bit && parts <= 64) {
            const int64_t stop = std::min(len, next + kNgpBlock);
            for (int64_t j = next; j < stop; ++j) __builtin_prefetch(grid + cells[j], 1);
          }
          if (m == bit && parts <= 64) {  // every cell of the block is this owner's
            if (wts == nullptr) {
              for (int64_t j = 0; j < bl; ++j) grid[cells[b + j]] += scalar_t(1);
            } else {
              for (int64_t j = 0; j < bl; ++j) grid[cells[b + j]] += wts[start + b + j];
            }
            continue;
          }
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

// NGP by paint_sorted's counting sort: (1) the cells of a chunk's particles, split between the
// threads (the block fast path), kept with their slab group and counted per group; (2) each
// thread moves its cells (and weights) to its place in each group; (3) the groups, in runs
// balanced on their particles, are updated group by group, each in cache. Every cell sees its
// particles in order. Extra memory: three indices (and two weights) per particle of a chunk,
// at most one grid.
template <typename scalar_t, typename index_t>
void paint_ngp_sorted(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                      const GridSpec& g, const SlabGroups& sg, int64_t parts) {
  const int64_t n = g.n, groups = sg.count;
  const int64_t grid_bytes = n * n * n * int64_t{sizeof(scalar_t)};
  const int64_t per_particle = 2 * int64_t{sizeof(index_t)} + int64_t{sizeof(int32_t)} +
                               (wts != nullptr ? 2 * int64_t{sizeof(scalar_t)} : 0);
  const int64_t chunk = std::clamp<int64_t>(grid_bytes / per_particle, kNgpBlock * 64, num);
  std::unique_ptr<index_t[]> cells(new index_t[chunk]), sorted(new index_t[chunk]);
  std::unique_ptr<int32_t[]> group(new int32_t[chunk]);
  std::unique_ptr<scalar_t[]> mass(wts != nullptr ? new scalar_t[chunk] : nullptr);
  std::vector<int64_t> counts(parts * groups), group_start(groups + 1);
  const NgpFastPath f = make_ngp_fast_path(g);
  for (int64_t begin = 0; begin < num; begin += chunk) {
    const int64_t len = std::min(chunk, num - begin);
    const scalar_t* cpos = pos + 3 * begin;
    auto part_begin = [&](int64_t t) { return len * t / parts; };
    // 1. cells and their groups, counted per part and group
    std::fill(counts.begin(), counts.end(), 0);
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      int32_t v[3 * kNgpBlock];
      for (int64_t t = t0; t < t1; ++t) {
        int64_t* cnt = counts.data() + t * groups;
        const int64_t e = part_begin(t + 1);
        for (int64_t b = part_begin(t); b < e; b += kNgpBlock) {
          const int64_t bl = std::min(kNgpBlock, e - b);
          prefetch_ahead(cpos, 3 * b, 3 * len);
        ngp_block_cells(cpos + 3 * b, 3 * bl, f, v);
          for (int64_t j = 0; j < bl; ++j) {
            int64_t cell[3];
            if (!ngp_fast_cells(v + 3 * j, f, cell))
              for (int d = 0; d < 3; ++d) cell[d] = ngp_cell(cpos[3 * (b + j) + d], g);
            cells[b + j] = static_cast<index_t>((cell[0] * n + cell[1]) * n + cell[2]);
            const int32_t grp = sg.group[cell[0]];
            group[b + j] = grp;
            ++cnt[grp];
          }
        }
      }
    });
    group_offsets(counts, parts, groups, &group_start);
    // 2. the cells (and weights) in place
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t* cursor = counts.data() + t * groups;
        for (int64_t p = part_begin(t); p < part_begin(t + 1); ++p) {
          const int64_t k = cursor[group[p]]++;
          sorted[k] = cells[p];
          if (wts != nullptr) mass[k] = wts[begin + p];
        }
      }
    });
    // 3. group by group, in balanced runs
    const std::vector<int64_t> runs = balanced_runs(group_start, parts);
    at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t j0 = group_start[runs[t]], j1 = group_start[runs[t + 1]];
        if (wts == nullptr) {
          for (int64_t j = j0; j < j1; ++j) grid[sorted[j]] += scalar_t(1);
        } else {
          for (int64_t j = j0; j < j1; ++j) grid[sorted[j]] += mass[j];
        }
      }
    });
  }
}

// ---------------------------------------------------------------------------- the strategy

// The first x-plane of a particle's stencil.
template <int ORDER, typename scalar_t>
inline int64_t first_plane(scalar_t x, const GridSpec& g) {
  if constexpr (ORDER == 1) {
    return ngp_cell(x, g);
  } else {
    scalar_t t;
    return locate_axis<ORDER>(x, g, &t);
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
    const int64_t i0 = first_plane<ORDER>(pos[3 * p], g);
    for (int a = 0; a < ORDER; ++a) load[wrap3(i0 + a, n)] += 16;
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

enum class Strategy { kAuto, kDirect, kBuckets };

// LSSCORE_PAINT_STRATEGY, read at each call: unset or "auto" (the probe decides), "direct" or
// "buckets".
Strategy forced_strategy() {
  const char* v = std::getenv("LSSCORE_PAINT_STRATEGY");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return Strategy::kAuto;
  if (std::strcmp(v, "direct") == 0) return Strategy::kDirect;
  if (std::strcmp(v, "buckets") == 0) return Strategy::kBuckets;
  TORCH_CHECK(false, "LSSCORE_PAINT_STRATEGY must be auto, direct or buckets, got '", v, "'");
}

// The probe: on a sample of the particles, (1) coherence: the distinct tiles (8^3 cells) that
// runs of kProbeRun consecutive particles fall in, per particle (near 1 for a shuffled
// catalogue, a small fraction for one in lattice or space-filling-curve order); (2) footprint:
// the effective number of tiles the catalogue fills, 1 / sum_i p_i^2 with p_i the share of the
// particles in tile i, estimated from the pairs of a strided sample that share a tile, times
// a tile's bytes: the part of the grid that most of the writes go to.
constexpr int64_t kProbeRuns = 32, kProbeRun = 256, kProbeSample = 8192;
constexpr int kTileShift = 3;

struct Probe {
  double distinct_per_particle;  // coherence: low is coherent
  double footprint_bytes;
};

template <typename scalar_t>
inline int64_t tile_of(const scalar_t* x, const GridSpec& g, int64_t tiles) {
  int64_t key = 0;
  for (int d = 0; d < 3; ++d) {
    const int64_t c = cell_index(cell_coordinate<false>(static_cast<double>(x[d]), g), g.n);
    key = key * tiles + (c >> kTileShift);
  }
  return key;
}

template <typename scalar_t>
Probe probe(const scalar_t* pos, int64_t num, const GridSpec& g) {
  const int64_t tiles = ((g.n - 1) >> kTileShift) + 1;
  std::vector<int64_t> keys;
  // (1) runs of consecutive particles, spread over the catalogue
  const int64_t run = std::min(kProbeRun, num);
  const int64_t runs = std::min(kProbeRuns, num / run);
  int64_t distinct = 0;
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t first = (num - run) * r / std::max<int64_t>(1, runs - 1);
    keys.clear();
    for (int64_t p = first; p < first + run; ++p) keys.push_back(tile_of(pos + 3 * p, g, tiles));
    std::sort(keys.begin(), keys.end());
    distinct += std::unique(keys.begin(), keys.end()) - keys.begin();
  }
  // (2) a strided sample: pairs in the same tile
  const int64_t sample = std::min(kProbeSample, num);
  keys.clear();
  for (int64_t k = 0; k < sample; ++k) keys.push_back(tile_of(pos + 3 * (num * k / sample), g, tiles));
  std::sort(keys.begin(), keys.end());
  double same = 0.0;
  for (int64_t i = 0, j = 0; i < sample; i = j) {
    while (j < sample && keys[j] == keys[i]) ++j;
    same += 0.5 * static_cast<double>(j - i) * static_cast<double>(j - i - 1);
  }
  const double pairs = 0.5 * static_cast<double>(sample) * static_cast<double>(sample - 1);
  const double total_tiles = std::pow(static_cast<double>(tiles), 3);
  const double effective = same > 0.0 ? std::min(total_tiles, pairs / same) : total_tiles;
  const double tile_bytes = std::pow(static_cast<double>(std::min<int64_t>(g.n, 1 << kTileShift)), 3) *
                            static_cast<double>(sizeof(scalar_t));
  return Probe{static_cast<double>(distinct) / static_cast<double>(std::max<int64_t>(1, runs * run)),
               effective * tile_bytes};
}

constexpr double kCoherent = 0.5;                  // distinct tiles per particle, at most
constexpr double kCachedBytes = double(1 << 22);  // a footprint the caches hold, at most

// How a catalogue is painted (see the top of the file): a grid whose owner ranges (`width`
// slabs each, `owners` of them) fit in cache as they are, or a catalogue that the probe finds
// coherent, directly; one it finds compact, directly for NGP or one owner; else sorted. On the
// filament catalogue of bench/bm_paint.py (2^24 particles, compact: 3.9 MiB, unordered), CIC
// and TSC direct on 2 threads took 412 and 709 ms against 291 and 497 bucketed, on 1 thread 375
// and 756 against 518 and 921; NGP direct 119 against 143 on 2 threads.
template <int ORDER, typename scalar_t>
Strategy choose_strategy(const scalar_t* pos, int64_t num, const GridSpec& g, int64_t width,
                         int64_t owners) {
  const Strategy forced = forced_strategy();
  if (forced != Strategy::kAuto) return forced;
  const int64_t slab_bytes = g.n * g.n * int64_t{sizeof(scalar_t)};
  if (width * slab_bytes <= 2 * kGroupBytes) return Strategy::kDirect;  // in cache as it is
  const Probe pr = probe(pos, num, g);
  const bool compact = pr.footprint_bytes <= kCachedBytes && (ORDER == 1 || owners == 1);
  if (pr.distinct_per_particle <= kCoherent || compact) return Strategy::kDirect;
  return Strategy::kBuckets;
}

template <int ORDER, typename scalar_t>
void paint_kernel(const scalar_t* pos, const scalar_t* wts, int64_t num, scalar_t* grid,
                  const GridSpec& g) {
  const int64_t n = g.n;
  if (num < kDirectThreshold) {
    forced_strategy();  // a bad value is refused whatever the size
    if constexpr (ORDER == 1) {
      paint_range_ngp(pos, wts, num, grid, g, 0, n);
    } else {
      paint_all<ORDER>(pos, wts, 0, num, grid, g);
    }
    return;
  }
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n));
  if constexpr (ORDER == 1) {
    const Strategy strategy = choose_strategy<ORDER>(pos, num, g, n, parts);
    const int64_t slab_bytes = n * n * int64_t{sizeof(scalar_t)};
    const bool small = n * n * n < (int64_t{1} << 31);
    if (strategy == Strategy::kBuckets) {
      const SlabGroups sg = make_slab_groups(n, kGroupBytes / slab_bytes);
      if (small) {
        paint_ngp_sorted<scalar_t, uint32_t>(pos, wts, num, grid, g, sg, parts);
      } else {
        paint_ngp_sorted<scalar_t, uint64_t>(pos, wts, num, grid, g, sg, parts);
      }
    } else {
      // also on one thread: the cells first, then the updates, each block's prefetched while
      // the one before is updated
      const std::vector<int64_t> bounds = balanced_ranges<ORDER>(pos, num, g, parts);
      if (small) {
        paint_ngp_parallel<scalar_t, uint32_t>(pos, wts, num, grid, g, bounds);
      } else {
        paint_ngp_parallel<scalar_t, uint64_t>(pos, wts, num, grid, g, bounds);
      }
    }
    return;
  } else {
    const Strategy strategy = choose_strategy<ORDER>(pos, num, g, (n + parts - 1) / parts, parts);
    if (strategy == Strategy::kDirect && parts == 1) {
      paint_all<ORDER>(pos, wts, 0, num, grid, g);
      return;
    }
    if (strategy == Strategy::kDirect) {
      const std::vector<int64_t> bounds = balanced_ranges<ORDER>(pos, num, g, parts);
      const std::vector<uint64_t> masks = block_owner_masks(pos, num, g, bounds);
      at::parallel_for(0, parts, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t lo = bounds[t], width = bounds[t + 1] - bounds[t];
          if (width > 0) paint_owned<ORDER>(pos, wts, num, grid, g, masks, t, parts, lo, width);
        }
      });
      return;
    }
    // the records take at most one grid (see the top of the file)
    const int64_t grid_bytes = n * n * n * int64_t{sizeof(scalar_t)};
    const int64_t slab_bytes = n * n * int64_t{sizeof(scalar_t)};
    const int64_t capacity = std::clamp<int64_t>(
        grid_bytes / int64_t{sizeof(Record<scalar_t>)}, kMinRecords,
        std::min(kMaxRecords, 2 * num + 2));
    paint_sorted<ORDER>(pos, wts, num, grid, g, make_slab_groups(n, kGroupBytes / slab_bytes),
                        parts, capacity);
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
