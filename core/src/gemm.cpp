// sgemm driver, GotoBLAS/BLIS style: C is computed in cache blocks (KC of K, then MC rows of
// op(A), then NC columns of op(B)); each block of op(B) and op(A) is packed into k-major panels of
// NR columns / MR rows, read from A and B in their stored layout, and the micro-kernel chosen
// for this CPU (gemm_kernels.h) sweeps MR x NR tiles of C over them, one A panel against all
// the B panels of the block. The driver is the same for every kernel: MR, NR, the tile and the
// packing routines come from the kernel.
#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "cpu_features.h"
#include "gemm_kernels.h"
#include "heterocnn/gemm.h"
#include "scratch.h"
#ifdef _OPENMP
#include <omp.h>
#endif

namespace hc {
namespace gemm {
namespace {

// Cache blocks, for a core with 48 KiB L1d and 1 MiB L2 (Zen 5) and a 14 x 32 kernel: an
// MR x KC panel of op(A) (14 KiB) stays in L1 while the kernel runs along the KC x NC block of
// op(B) (768 KiB, in L2, streamed panel by panel). The MC x KC block of op(A) (1 MiB, in L3)
// is large so that op(B) is packed only once per 1024 rows of C, and op(A) only once.
// Blocks are evened out (block_size) so that no block is a sliver. Tuned on 512..2048 squares.
constexpr int64_t KC = 256, MC = 1024, NC = 768;

constexpr int64_t kInPlaceBytes = kSgemmInPlaceBytes;
int forced_in_place = -1;  // force_in_place's setting: -1 by size, 0 never, 1 always

// Portable kernel: plain loops over a 4 x 16 tile that the compiler vectorises as it can.
template <int R>
struct GenericRows {
  static constexpr int NR = 16;
  static void run(int64_t kc, const float* a, int64_t as, const float* b, int64_t bs, float* c,
                  int64_t ldc, float alpha, float beta, int nr) {
    float acc[R][NR] = {};
    for (int64_t k = 0; k < kc; ++k, a += as, b += bs)
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < nr; ++j) acc[i][j] += a[i] * b[j];
    for (int i = 0; i < R; ++i)
      for (int j = 0; j < nr; ++j) {
        float& cij = c[i * ldc + j];
        cij = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * cij;
      }
  }
};

// Every kernel, fastest first.
constexpr const Kernel* kKernels[] = {&kAvx512, &kAvx2, &kGeneric};

bool cpu_runs(const Kernel* k) {
  __builtin_cpu_init();
  if (k == &kAvx512)  // its translation unit is compiled with -mavx512f -mavx512vl -mavx512dq
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq");
  if (k == &kAvx2) return cpu_has_avx2_fma();
  return true;
}

const Kernel* detect_kernel() {
  for (const Kernel* k : kKernels)
    if (cpu_runs(k)) return k;
  return &kGeneric;
}

const Kernel*& active_kernel() {
  static const Kernel* kernel = detect_kernel();
  return kernel;
}

// Each thread packs into its own buffers (scratch.h).
thread_local ScratchBuffer packed_a, packed_b;

// The size of blocks that split n into equal parts of at most `limit` (about), in whole tiles.
int64_t block_size(int64_t n, int64_t limit, int tile) {
  const int64_t blocks = (n + limit - 1) / limit, per_block = (n + blocks - 1) / blocks;
  return (per_block + tile - 1) / tile * tile;
}

// The tiles of rows of a block of mc rows: whole tiles of mr rows, except that where the last
// would have fewer than the kernel's full_rate_rows (and so take as long as that many), the
// last two share their rows evenly: with a 6-row kernel, 32 rows go as 6 6 6 6 4 4, not
// 6 6 6 6 6 2. Each tile's rows are packed as a panel of their own (a panel is mr wide, whatever
// its rows), the pair's second after the first's.
struct RowTiles {
  int mr;
  int64_t mc;
  int64_t split;  // rows before the shared pair, whole tiles of mr (mc where there is no pair)
  int first;      // rows of the pair's first tile; its second has the rest

  RowTiles(const Kernel& kr, int64_t rows) : mr(kr.mr), mc(rows), split(rows), first(0) {
    const int64_t r = rows % mr;
    if (rows > mr && r > 0 && r < kr.full_rate_rows)
      split = rows - mr - r, first = static_cast<int>((mr + r + 1) / 2);
  }
  // The rows of the tile at row ir (a row where a tile starts).
  int rows_at(int64_t ir) const {
    if (ir < split) return static_cast<int>(std::min<int64_t>(mr, mc - ir));
    return ir == split ? first : static_cast<int>(mc - split - first);
  }
  // Where the tile at row ir has its panel, in floats per step of k.
  int64_t panel_at(int64_t ir) const { return ir <= split ? ir : split + mr; }
  // Packs the block's rows of op(A) from row ic on into these tiles' panels.
  void pack(const Kernel& kr, Operand a, int64_t ic, int64_t pc, int64_t kc, float* dst) const {
    if (split > 0) kr.pack_a(a, ic, split, pc, kc, dst);
    if (split == mc) return;
    kr.pack_a(a, ic + split, first, pc, kc, dst + split * kc);
    kr.pack_a(a, ic + split + first, mc - split - first, pc, kc, dst + (split + mr) * kc);
  }
};

// C (M,N) = alpha * op(A) (M,K) * op(B) (K,N) + beta * C on the calling thread, K > 0.
// a is op(A) viewed by rows of C, b is op(B) viewed by columns of C (b.trans false means B is
// stored (N,K)). A transposed a (or non-transposed B) is read in place when in_place says so.
void gemm_blocked(const Kernel& kr, Operand a, Operand b, int64_t M, int64_t N, int64_t K,
                  float alpha, float beta, float* C, int64_t ldc, bool in_place) {
  const bool a_in_place = in_place && a.trans, b_in_place = in_place && b.trans;
  const int64_t mc_max = block_size(M, MC, kr.mr), nc_max = block_size(N, NC, kr.nr);
  const int64_t kc_max = block_size(K, KC, 1);
  auto whole_panels = [](int64_t n, int width) { return (n + width - 1) / width * width; };
  float* abuf = a_in_place ? nullptr : packed_a.get(whole_panels(std::min(mc_max, M), kr.mr) * kc_max);
  float* bbuf = b_in_place ? nullptr : packed_b.get(whole_panels(std::min(nc_max, N), kr.nr) * kc_max);

  for (int64_t pc = 0; pc < K; pc += kc_max) {
    const int64_t kc = std::min(kc_max, K - pc);
    const float beta_k = pc == 0 ? beta : 1.0f;
    for (int64_t ic = 0; ic < M; ic += mc_max) {
      const int64_t mc = std::min(mc_max, M - ic);
      const RowTiles tiles(kr, mc);
      if (!a_in_place) tiles.pack(kr, a, ic, pc, kc, abuf);
      for (int64_t jc = 0; jc < N; jc += nc_max) {
        const int64_t nc = std::min(nc_max, N - jc);
        if (!b_in_place) kr.pack_b(b, jc, nc, pc, kc, bbuf);
        for (int64_t ir = 0; ir < mc; ir += tiles.rows_at(ir)) {
          const int mr = tiles.rows_at(ir);
          const float* ap = a_in_place ? a.p + pc * a.ld + ic + ir : abuf + tiles.panel_at(ir) * kc;
          const int64_t as = a_in_place ? a.ld : kr.mr;
          for (int64_t jr = 0; jr < nc; jr += kr.nr) {
            const int nr = (int)std::min<int64_t>(kr.nr, nc - jr);
            const float* bp = b_in_place ? b.p + pc * b.ld + jc + jr : bbuf + jr * kc;
            const int64_t bs = b_in_place ? b.ld : kr.nr;
            kr.tile(kc, ap, as, bp, bs, C + (ic + ir) * ldc + jc + jr, ldc, alpha, beta_k, mr, nr);
          }
        }
      }
    }
  }
}

// C = beta * C, without reading C when beta == 0.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

#ifdef _OPENMP
// Splits `n` elements, in whole tiles of `tile`, into `parts` contiguous ranges; returns where
// range p starts.
int64_t split_point(int64_t n, int tile, int parts, int p) {
  const int64_t tiles = (n + tile - 1) / tile;
  return std::min(n, tiles * p / parts * tile);
}

// What one block of rows x cols of C costs its thread, in multiply-adds per step of k: the
// tile sweeps (rows * cols) and reading (packing) the block's rows of op(A) and columns of
// op(B), about a cycle a float, in which the core's two FMA units do NR multiply-adds (a
// kernel's NR is two of its vectors). (On a Zen 5 EPYC at 2 threads, NT 256 x 128 x 256 split
// by columns, 8% fewer multiply-adds and 19% more floats read than split by rows, ran 14%
// slower, as this cost predicts; with a read a quarter as dear it chose the columns.)
double block_cost(const Kernel& kr, int64_t rows, int64_t cols) {
  return (double)rows * cols + (double)kr.nr * (double)(rows + cols);
}

// A split of C into tm x tn blocks, and the size of its largest block.
struct Grid {
  int tm = 1, tn = 1;
  int64_t rows = 0, cols = 0;
};

// The grid of tm x tn blocks, in whole MR x NR tiles, that C is split into for a team of
// `threads`: no more blocks than threads, no empty block, and of those grids the one whose
// largest block costs least (ties: fewer blocks). Threads beyond tm * tn stay idle, so a
// problem of few tiles is not cut finer than its tiles and the team keeps its size (in
// libgomp a team of another size costs more than an idle thread; every thread of the team
// meets the join either way).
Grid choose_grid(int threads, const Kernel& kr, int64_t M, int64_t N) {
  const int64_t mt = (M + kr.mr - 1) / kr.mr, nt = (N + kr.nr - 1) / kr.nr;
  Grid best{1, 1, M, N};
  double best_cost = block_cost(kr, M, N);
  for (int tm = 1; tm <= std::min<int64_t>(threads, mt); ++tm)
    for (int tn = 1; tn <= std::min<int64_t>(threads / tm, nt); ++tn) {
      const int64_t rows = std::min(M, (mt + tm - 1) / tm * kr.mr);
      const int64_t cols = std::min(N, (nt + tn - 1) / tn * kr.nr);
      const double cost = block_cost(kr, rows, cols);
      if (cost < best_cost || (cost == best_cost && tm * tn < best.tm * best.tn))
        best_cost = cost, best = {tm, tn, rows, cols};
    }
  return best;
}

// gemm_blocked on a team of `threads`, C split into `grid` (choose_grid's for that team);
// each thread packs its own panels.
void gemm_team(int threads, const Grid& grid, const Kernel& kr, Operand a, Operand b, int64_t M,
               int64_t N, int64_t K, float alpha, float beta, float* C, int64_t ldc,
               bool in_place) {
  const int tm = grid.tm, tn = grid.tn;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), ti = t / tn, tj = t % tn;
    const int64_t i0 = split_point(M, kr.mr, tm, ti), i1 = split_point(M, kr.mr, tm, ti + 1);
    const int64_t j0 = split_point(N, kr.nr, tn, tj), j1 = split_point(N, kr.nr, tn, tj + 1);
    if (ti < tm && i1 > i0 && j1 > j0) {  // threads past the grid idle
      const Operand at{a.trans ? a.p + i0 : a.p + i0 * a.ld, a.ld, a.trans};
      const Operand bt{b.trans ? b.p + j0 : b.p + j0 * b.ld, b.ld, b.trans};
      gemm_blocked(kr, at, bt, i1 - i0, j1 - j0, K, alpha, beta, C + i0 * ldc + j0, ldc,
                   in_place);
    }
  }
}

// What the team costs on this machine, measured once per kernel and team size: one thread's
// seconds per unit of block_cost and step of k (from a product of 4 x 4 tiles and K 256, NT
// as a Linear layer's forward), and what a product near the rule's threshold (4 x 4 tiles, K
// 64, about a megaflop) takes on the team beyond its largest block's share of that: starting
// and joining the team, the other threads' cold caches. Each time is the least of 15 runs,
// after one to warm up.
struct TeamCosts {
  double unit_s = 0.0;
  double overhead_s = 0.0;
};

TeamCosts measure_team_costs(const Kernel& kr, int threads) {
  using clock = std::chrono::steady_clock;
  const int64_t M = 4 * kr.mr, N = 4 * kr.nr, K = 256, K_small = 64;
  std::vector<float> A(M * K, 0.5f), B(N * K, 0.25f), C(M * N);
  const Operand a{A.data(), K, false}, b{B.data(), K, false};
  auto least_time = [](auto&& run) {
    run();
    double best = 1e300;
    for (int r = 0; r < 15; ++r) {
      const auto t0 = clock::now();
      run();
      best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count());
    }
    return best;
  };
  const double one = least_time(
      [&] { gemm_blocked(kr, a, b, M, N, K, 1.0f, 0.0f, C.data(), N, false); });
  const Grid grid = choose_grid(threads, kr, M, N);
  const double team = least_time([&] {
    gemm_team(threads, grid, kr, a, b, M, N, K_small, 1.0f, 0.0f, C.data(), N, false);
  });
  TeamCosts c;
  c.unit_s = one / (K * block_cost(kr, M, N));
  c.overhead_s = std::max(0.0, team - c.unit_s * K_small * block_cost(kr, grid.rows, grid.cols));
  return c;
}

const TeamCosts& team_costs(const Kernel& kr, int threads) {
  thread_local const Kernel* last_kernel = nullptr;
  thread_local int last_threads = 0;
  thread_local const TeamCosts* last = nullptr;
  if (&kr == last_kernel && threads == last_threads) return *last;
  static std::mutex mutex;
  static std::map<std::pair<const Kernel*, int>, TeamCosts> known;  // nodes never move
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, fresh] = known.try_emplace({&kr, threads});
  if (fresh) it->second = measure_team_costs(kr, threads);
  last_kernel = &kr, last_threads = threads, last = &it->second;
  return *last;
}

int forced_team = -1;  // force_team's setting: -1 the measured rule, 0 never, 1 always

// The team a product runs on, and its grid: threads 1 (the calling thread alone) inside a
// parallel region, else the whole team when the time the split saves (one thread's cost of
// all of C less its grid's largest block, at the measured rate) exceeds what the team costs,
// else 1. (It replaces a fixed 2 MFLOP from one machine: on the 2-core EPYC the team overhead
// measures 0.5-0.75 us, and 120 -> 84 Linear layers at batch 64, 1.3 MFLOP, run a third
// faster on the team.) A product of under 1e5 flops (half a microsecond on one core) saves
// less than that, below any overhead measured, so such a product is not asked about (nor
// anything measured for it).
struct TeamPlan {
  int threads = 1;
  Grid grid;
};

TeamPlan plan_team(const Kernel& kr, int64_t M, int64_t N, int64_t K) {
  const int threads = omp_get_max_threads();
  if (omp_in_parallel() || threads == 1 || forced_team == 0) return {};
  const Grid grid = choose_grid(threads, kr, M, N);
  if (forced_team == 1) return {threads, grid};
  if (2.0 * M * N * K < 1e5 || grid.tm * grid.tn == 1) return {};
  const TeamCosts& c = team_costs(kr, threads);
  const double saved =
      c.unit_s * K * (block_cost(kr, M, N) - block_cost(kr, grid.rows, grid.cols));
  if (saved > c.overhead_s) return {threads, grid};
  return {};
}
#endif

}  // namespace

const Kernel kGeneric = {"generic", 4, GenericRows<1>::NR, 1, &tile_by_rows<GenericRows, 4>,
                         &pack_panels<4>, &pack_panels<GenericRows<1>::NR>};

bool force_kernel(const char* name) {
  if (!name) {
    active_kernel() = detect_kernel();
    return true;
  }
  for (const Kernel* k : kKernels)
    if (std::string_view(k->name) == name && cpu_runs(k)) {
      active_kernel() = k;
      return true;
    }
  return false;
}

std::pair<double, double> team_costs_measured(int threads) {
#ifdef _OPENMP
  const TeamCosts& c = team_costs(*active_kernel(), threads);
  return {c.unit_s, c.overhead_s};
#else
  (void)threads;
  return {0.0, 0.0};
#endif
}

void force_in_place(int mode) { forced_in_place = mode; }

void force_team(int mode) {
#ifdef _OPENMP
  forced_team = mode;
#else
  (void)mode;
#endif
}

}  // namespace gemm

void sgemm(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  using namespace gemm;
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) return scale_c(M, N, beta, C, ldc);

  const Kernel& kr = *active_kernel();
  // op(A) by rows of C; op(B) by columns of C, i.e. B stored (K,N) is the transposed view.
  const Operand a{A, lda, ta == Trans::T}, b{B, ldb, tb == Trans::N};
  const bool in_place = forced_in_place >= 0
                            ? forced_in_place == 1
                            : (M * K + K * N) * (int64_t)sizeof(float) <= kInPlaceBytes;
#ifdef _OPENMP
  if (const TeamPlan team = plan_team(kr, M, N, K); team.threads > 1)
    return gemm_team(team.threads, team.grid, kr, a, b, M, N, K, alpha, beta, C, ldc, in_place);
#endif
  gemm_blocked(kr, a, b, M, N, K, alpha, beta, C, ldc, in_place);
}

const char* sgemm_kernel_name() { return gemm::active_kernel()->name; }

int sgemm_tile_columns() { return gemm::active_kernel()->nr; }

}  // namespace hc
