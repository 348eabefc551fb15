// x (N,C,H,W), w (M,C,K,K), b (M,) or none -> y (N,M,Ho,Wo)
#include "heterocnn/conv2d.h"

#include <algorithm>

#include "conv_direct.h"
#include "conv_winograd.h"
#include "cpu_features.h"
#include "heterocnn/activation.h"
#include "heterocnn/error.h"
#include "heterocnn/gemm.h"
#include "heterocnn/parallel.h"

namespace hc {

namespace {

// A 1x1 kernel with stride 1 and no padding reads the image as its own im2col matrix.
bool col_is_input(const ConvGeom& g) { return g.K == 1 && g.stride == 1 && g.pad == 0; }

ConvPath& forced_path() {
  static ConvPath path = ConvPath::Auto;
  return path;
}

enum class Pass { Forward, WeightGrad, InputGrad };

// Which kernels compute a pass: the grouped GEMM, the direct kernels or Winograd's.
enum class Kernels { Gemm, Direct, Winograd };

// Whether the direct kernels (conv_direct.h) would compute this pass. They hold an output row in
// vectors of L = conv_direct::lanes() floats, so they run at the lane occupancy Wo / (L *
// vectors); the GEMM over a group's unrolled windows runs at ~85-90% of the FMA peak once its
// operands are big enough (M >= 32 rows, a reduction of >= 256), less the unrolling. So the direct kernels
// compute every pass where they apply, except on rows that fill less than 3/4 of their vectors
// (7 x 7: 44%) where the GEMM is big enough: there the grouped GEMM was measured ~1.7x faster
// forward and dx (CPU_PERF.md, entry 11) and ~2x faster for dw (entry 12). (dw of the 14 x 14
// convolutions, 88% of a vector, went through the GEMM over im2row until entry 12: 5% faster
// on the Zen 5 of entry 8, equal on the Zen 4 and 15% slower at 16 threads on the Xeon of
// entry 12.) The rule still counts a row's occupancy, though planes with W == Wo now run as one
// run of vectors (entry 13) and narrow outputs with 16k channels as vectors of channels (entry
// 14): the 7 x 7 layers it sends to the GEMM ran no faster on the channel-vector kernels
// (entry 14), and the 14 and 28 wide ones already go direct. (Those figures are AVX-512's,
// L = 16. With AVX2's L = 8 a 7-wide row fills 88% of its vector, so it goes direct; that has
// not been timed against the GEMM: no benchmark net has such a layer outside Winograd's.)
bool direct_wins(const ConvGeom& g, int64_t M, Pass pass) {
  const int64_t L = conv_direct::lanes(), lanes = L * ((g.Wo + L - 1) / L);
  const bool gemm_fits = M >= 32 && g.col_rows() >= 256 && (pass != Pass::InputGrad || g.C >= 32);
  return 4 * g.Wo >= 3 * lanes || !gemm_fits;
}

bool winograd_applies(const ConvGeom& g) {
  return conv_winograd::fits(g) && conv_winograd::available();
}

// Whether Winograd's F(2x2, 3x3) computes this pass (auto). Its 16 GEMMs per block of tiles
// reduce over the pass's input channels (C forward, M for dx) into its output channels, so
// both must fill a GEMM's tiles: from 32 channels in and out, for every pass. Measured
// (CPU_PERF.md) against the direct kernels and the grouped GEMM: forward and dx 1.1-1.7x faster
// (entry 15, one thread); dw from 32 in and 64 out (entry 18) and at 32 and 32 too (entry 22:
// 28 x 28, 22-38% faster than the direct dw on the EPYC at 1 and 2 threads, batch 64 and 256;
// entry 18's 0.83-1.17x on the Xeon predates entries 18-21's changes to both paths; at 7 x 7
// the direct dw is faster still, at 32 -> 32 only).
bool winograd_wins(const ConvGeom& g, int64_t M) { return g.C >= 32 && M >= 32; }

// The one rule for every pass, and the test hook's forcing (a forced path that does not apply
// falls back to the GEMM).
Kernels kernels_for(const ConvGeom& g, int64_t M, Pass pass) {
  const bool direct = conv_direct::fits(g) && conv_direct::available();
  switch (forced_path()) {
    case ConvPath::Gemm: return Kernels::Gemm;
    case ConvPath::Direct: return direct ? Kernels::Direct : Kernels::Gemm;
    case ConvPath::Winograd: return winograd_applies(g) ? Kernels::Winograd : Kernels::Gemm;
    case ConvPath::Auto: break;
  }
  if (winograd_applies(g) && winograd_wins(g, M)) return Kernels::Winograd;
  return direct && direct_wins(g, M, pass) ? Kernels::Direct : Kernels::Gemm;
}

// Floats of the direct path's rearranged weights (forward's wt, backward's wf), at ws.
size_t direct_weights_size(const ConvGeom& g, int64_t M) {
  return conv_direct::fits(g) ? static_cast<size_t>(M * g.col_rows()) : 0;
}

int64_t& forced_group() {
  static int64_t group = 0;
  return group;
}

// Samples per GEMM on the GEMM path: the samples of a group are unrolled side by side into one
// matrix (C*K*K, group*Ho*Wo), so that a small image (7 x 7: 49 columns a sample) still gives
// the GEMM enough columns for its tiles and packing to pay. As many samples as keep a group's
// unrolled windows and output block within this core's L2 (read from the CPU at run time), so
// that im2col's writes are still in L2 when the GEMM packs them; at least one. (Measured on
// 7 x 7 convolutions: groups of 1, 4, 8, 16 samples; the best was the largest within L2.)
// A 1x1 convolution reads the image in place, one sample at a time.
int64_t gemm_group(const ConvGeom& g, int64_t M) {
  if (col_is_input(g)) return 1;
  if (forced_group() > 0) return forced_group();
  const int64_t per_sample = (g.col_rows() + 1 + M) * g.col_cols() * int64_t{sizeof(float)};
  return std::clamp<int64_t>(cpu_l2_bytes() / per_sample, 1, 64);
}

// The group actually used for a batch of N on `threads`: no larger than a thread's share of the
// samples, so that every thread has work.
int64_t group_for(const ConvGeom& g, int64_t M, int64_t N, int threads) {
  return std::max<int64_t>(1, std::min(gemm_group(g, M), (N + threads - 1) / threads));
}

// Floats of forward's per-thread part: a group's unrolled windows with a row of ones below them,
// and its output block (M, group*HoWo) before it is spread over the samples.
size_t forward_per_thread(const ConvGeom& g, int64_t M) {
  const int64_t cols = gemm_group(g, M) * g.col_cols();
  return static_cast<size_t>((g.col_rows() + 1 + M) * cols);
}

// The input gradient's geometry as a forward convolution of dy: (M, Ho, Wo) padded by K-1-pad.
ConvGeom dx_geom(const ConvGeom& g, int64_t M) {
  return make_conv_geom(M, g.Ho, g.Wo, g.K, 1, g.K - 1 - g.pad);
}

// Floats of Winograd's transformed weights where it applies: forward's U, or backward's U for
// dx and the threads' summed dU.
size_t winograd_weights_size(const ConvGeom& g, int64_t M, int copies) {
  return winograd_applies(g) ? copies * conv_winograd::transformed_size(M, g.C) : 0;
}

// Floats of the dw partial a thread sums into: dw (M, CKK), or Winograd's dU (16, M, C).
size_t dw_partial_size(const ConvGeom& g, int64_t M, Kernels dw_kernels) {
  return dw_kernels == Kernels::Winograd ? conv_winograd::transformed_size(M, g.C)
                                         : static_cast<size_t>(M * g.col_rows());
}

// Floats of backward's per-thread part, for any kernels that may be chosen or forced: the dw
// and db partials, then the GEMM's unrolled windows (im2row's for dw, then reused for dcol)
// and its dy gathered as (M, group*HoWo), or Winograd's scratch for dw and for dx.
size_t backward_per_thread(const ConvGeom& g, int64_t M) {
  const int64_t cols = gemm_group(g, M) * g.col_cols();
  size_t partials = static_cast<size_t>(M * g.col_rows()), scratch = (g.col_rows() + M) * cols;
  if (winograd_applies(g)) {
    partials = std::max(partials, conv_winograd::transformed_size(M, g.C));
    scratch = std::max({scratch, conv_winograd::scratch_size(g, M),
                        conv_winograd::scratch_size(dx_geom(g, M), g.C)});
  }
  return partials + M + scratch;
}

// Samples per dw GEMM within a group: as many as keep dY's block and the rows of their windows
// small enough for sgemm to read in place (kSgemmInPlaceBytes), at least one. Larger ones
// get packed, which costs more than the fewer passes over dw they save (14 x 14: one sample,
// 7 x 7 and 128 channels: two).
int64_t dw_samples(const ConvGeom& g, int64_t M) {
  const int64_t per_sample = g.col_cols() * (g.col_rows() + M) * int64_t{sizeof(float)};
  return std::max<int64_t>(1, kSgemmInPlaceBytes / per_sample);
}

// Samples per sweep of the direct dw kernel: as many as keep their x and dy within half of
// this core's L2, at least one.
int64_t direct_dw_group(const ConvGeom& g, int64_t M) {
  const int64_t per_sample = (g.C * g.H * g.W + M * g.col_cols()) * int64_t{sizeof(float)};
  return std::max<int64_t>(1, cpu_l2_bytes() / 2 / per_sample);
}

// Samples [first, end) of thread t's contiguous share of N over `team`.
int64_t share_begin(int64_t N, int team, int t) { return N * t / team; }

// The fused ReLU over one sample's output, still in cache after its GEMM (activation.h's
// select), on the calling thread: it runs inside the per-sample parallel loop.
void relu_in_place(int64_t n, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = relu(y[i]);
}

}  // namespace

void conv2d_force_path(ConvPath path) { forced_path() = path; }

void conv2d_force_group(int64_t samples) { forced_group() = std::max<int64_t>(0, samples); }

// Sizes below are products of bounded shapes (Conv2d::output_shape: the batch's unrolled
// windows fit in 2^40 elements) and the thread count, checked all the same.
size_t conv2d_forward_workspace_cpu(const ConvGeom& g, int64_t M, int threads) {
  // GEMM path: [w | b], and per thread a group's unrolled windows and output block.
  // Direct path: the weights k-major. Winograd: U, and per thread its scratch. Sized for any
  // of them, so that the path may be forced.
  constexpr const char* what = "Conv2d forward workspace";
  const size_t gemm =
      col_is_input(g)
          ? 0
          : checked_add(checked_mul(static_cast<size_t>(M), static_cast<size_t>(g.col_rows()) + 1,
                                    what),
                        checked_mul(forward_per_thread(g, M), static_cast<size_t>(threads), what),
                        what);
  const size_t winograd =
      winograd_applies(g)
          ? checked_add(winograd_weights_size(g, M, 1),
                        checked_mul(conv_winograd::scratch_size(g, M),
                                    static_cast<size_t>(threads), what),
                        what)
          : 0;
  return std::max({gemm, direct_weights_size(g, M), winograd});
}

// The head of backward's workspace: the direct dx's flipped weights, or Winograd's for dx
// followed by the threads' summed dU.
size_t backward_head_size(const ConvGeom& g, int64_t M) {
  return std::max(direct_weights_size(g, M), winograd_weights_size(g, M, 2));
}

size_t conv2d_backward_workspace_cpu(const ConvGeom& g, int64_t M, int threads) {
  // The head, then each thread's part (any path).
  constexpr const char* what = "Conv2d backward workspace";
  return checked_add(backward_head_size(g, M),
                     checked_mul(backward_per_thread(g, M), static_cast<size_t>(threads), what),
                     what);
}

void conv2d_forward_cpu(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                        const float* b, float* y, float* ws, bool relu) {
  const int64_t ckk = g.col_rows(), hw = g.col_cols(), in_n = g.C * g.H * g.W;
  if (col_is_input(g)) {
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      float* yn = y + n * M * hw;
      if (b)
        for (int64_t m = 0; m < M; ++m) std::fill(yn + m * hw, yn + (m + 1) * hw, b[m]);
      sgemm(Trans::N, Trans::N, M, hw, ckk, 1.f, w, ckk, x + n * in_n, hw, b ? 1.f : 0.f, yn,
            hw);
      if (relu) relu_in_place(M * hw, yn);
    }
    return;
  }
  const Kernels kernels = kernels_for(g, M, Pass::Forward);
  if (kernels == Kernels::Winograd) {
    float* U = ws;
    conv_winograd::transform_weights(M, g.C, w, false, U);
    float* scratch = ws + winograd_weights_size(g, M, 1);
    const size_t per_thread = conv_winograd::scratch_size(g, M);
#pragma omp parallel
    {
      const int team = team_size(), t = thread_id();
      const int64_t n0 = share_begin(N, team, t), n1 = share_begin(N, team, t + 1);
      if (n1 > n0)
        conv_winograd::forward(g, M, n1 - n0, x + n0 * in_n, U, b, y + n0 * M * hw, relu,
                               scratch + t * per_thread);
    }
    return;
  }
  if (kernels == Kernels::Direct) {
    float* wt = ws;  // (CKK, M): wt[k * M + m] = w[m, k]
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < ckk; ++k) wt[k * M + m] = w[m * ckk + k];
#pragma omp parallel
    {
      // This thread's contiguous share of the samples, in one call: the kernels' masks are
      // made once per call.
      const int team = team_size(), t = thread_id();
      const int64_t n0 = share_begin(N, team, t), n1 = share_begin(N, team, t + 1);
      if (n1 > n0)
        conv_direct::forward(g, M, n1 - n0, x + n0 * in_n, wt, b, y + n0 * M * hw, relu);
    }
    return;
  }
  // Y = [w | b] (M,CKK+1) * [col(x_n0) .. col(x_n0+s-1); 1] (CKK+1, s*HoWo) for each group
  // of s samples: the bias is one more step of the GEMM's reduction, so Y is written once (no
  // bias fill, no read-back of C). Without a bias, Y = w * [col(x_n) ..].
  const int64_t kb = b ? ckk + 1 : ckk;
  const float* wb = w;
  if (b) {
    float* wbias = ws;
    for (int64_t m = 0; m < M; ++m) {
      std::copy(w + m * ckk, w + (m + 1) * ckk, wbias + m * kb);
      wbias[m * kb + ckk] = b[m];
    }
    wb = wbias;
  }
  float* parts = ws + M * (ckk + 1);
  const size_t per_thread = forward_per_thread(g, M);
#pragma omp parallel
  {
    const int team = team_size(), t = thread_id();
    const int64_t group = group_for(g, M, N, team);
    float* col = parts + t * per_thread;
    for (int64_t n0 = share_begin(N, team, t), end = share_begin(N, team, t + 1); n0 < end;
         n0 += group) {
      const int64_t s = std::min(group, end - n0), cols = s * hw;
      float* out = col + kb * cols;  // Y (M, cols), unless the group is one sample
      for (int64_t i = 0; i < s; ++i) im2col_cpu(g, x + (n0 + i) * in_n, col + i * hw, cols);
      std::fill(col + ckk * cols, col + kb * cols, 1.f);  // the ones row (none without a bias)
      float* yn = y + n0 * M * hw;
      sgemm(Trans::N, Trans::N, M, cols, kb, 1.f, wb, kb, col, cols, 0.f, s == 1 ? yn : out,
            cols);
      if (s == 1) {
        if (relu) relu_in_place(M * hw, yn);
        continue;
      }
      // Spread Y's column blocks over the samples' planes (in cache), with the fused ReLU.
      for (int64_t i = 0; i < s; ++i)
        for (int64_t m = 0; m < M; ++m) {
          const float* src = out + m * cols + i * hw;
          float* dst = yn + (i * M + m) * hw;
          if (relu) {
#pragma omp simd
            for (int64_t p = 0; p < hw; ++p) dst[p] = hc::relu(src[p]);
          } else {
            std::copy(src, src + hw, dst);
          }
        }
    }
  }
}

namespace {

// db_t[m] += the sum of dy_n's plane m.
void add_bias_grad(int64_t M, int64_t hw, const float* dyn, float* db_t) {
  for (int64_t m = 0; m < M; ++m) {
    const float* d = dyn + m * hw;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < hw; ++i) s += d[i];
    db_t[m] += s;
  }
}

}  // namespace

void conv2d_backward_cpu(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                         const float* w, const float* dy, float* dx, float* dw, float* db,
                         float* ws, bool relu_mask) {
  const int64_t ckk = g.col_rows(), hw = g.col_cols(), in_n = g.C * g.H * g.W, K = g.K;
  const Kernels dw_kernels = kernels_for(g, M, Pass::WeightGrad);
  const Kernels dx_kernels = dx ? kernels_for(g, M, Pass::InputGrad) : Kernels::Gemm;
  const bool dw_direct = dw_kernels == Kernels::Direct, dw_wino = dw_kernels == Kernels::Winograd;
  const bool dx_direct = dx && dx_kernels == Kernels::Direct;
  const bool dx_wino = dx && dx_kernels == Kernels::Winograd;
  // dx_n = conv(dy_n, w'), dy (M,Ho,Wo) -> dx (C,H,W) padded by K-1-pad, with the kernel
  // transposed and flipped: for the direct kernels stored k-major,
  //   wf[((m*K + kh)*K + kw) * C + c] = w[m, c, K-1-kh, K-1-kw],
  // for Winograd's transformed (transform_weights' for_dx).
  const ConvGeom gt = dx_geom(g, M);
  float* wf = ws;
  if (dx_direct)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t kh = 0; kh < K; ++kh)
          for (int64_t kw = 0; kw < K; ++kw)
            wf[((m * K + kh) * K + kw) * g.C + c] =
                w[((m * g.C + c) * K + K - 1 - kh) * K + K - 1 - kw];
  if (dx_wino) conv_winograd::transform_weights(M, g.C, w, true, wf);
  float* dU = ws + winograd_weights_size(g, M, 1);  // the threads' dU summed (Winograd's dw)
  float* parts = ws + backward_head_size(g, M);
  const size_t per_thread = backward_per_thread(g, M);
  const int64_t dw_part = static_cast<int64_t>(dw_partial_size(g, M, dw_kernels));
  int team = 1;
#pragma omp parallel
  {
    const int t = thread_id();
#pragma omp single
    team = team_size();
    const int64_t group = group_for(g, M, N, team), dws = dw_samples(g, M);
    // This thread's dw and db partials, then its unrolled windows (reused for dcol) and
    // gathered dy, or Winograd's scratch.
    float* dw_t = parts + t * per_thread;
    float* db_t = dw_t + dw_part;
    float* col = db_t + M;
    float* dyg = col + ckk * group * hw;
    std::fill(dw_t, db_t + M, 0.f);
    // This thread's contiguous share of the samples.
    const int64_t n_begin = share_begin(N, team, t), n_end = share_begin(N, team, t + 1);
    if (dw_direct) {
      // In groups whose x and dy fill up to half of this core's L2 (read from the CPU at run
      // time) while the kernel sweeps them once per (channel block, kernel row): each sweep
      // ends in a horizontal sum of its accumulators, so the more positions a sweep covers,
      // the less those sums cost (CPU_PERF.md, entry 12).
      const int64_t dgroup = direct_dw_group(g, M);
      for (int64_t n = n_begin; n < n_end; n += dgroup)
        conv_direct::weight_grad(g, M, std::min(dgroup, n_end - n), x + n * in_n,
                                 dy + n * M * hw, dw_t);
    }
    if (n_end > n_begin && dw_wino)
      conv_winograd::weight_grad(g, M, n_end - n_begin, x + n_begin * in_n,
                                 dy + n_begin * M * hw, dw_t, col);
    if (n_end > n_begin && dx_wino) {  // the whole share at once, so its blocks fill up
      float* dxs = dx + n_begin * in_n;
      conv_winograd::forward(gt, g.C, n_end - n_begin, dy + n_begin * M * hw, wf, nullptr, dxs,
                             false, col);
      if (relu_mask)
        relu_backward_cpu((n_end - n_begin) * in_n, x + n_begin * in_n, dxs, dxs);
    }
    for (int64_t n0 = n_begin; n0 < n_end; n0 += group) {
      const int64_t s = std::min(group, n_end - n0), cols = s * hw;
      const float* x0 = x + n0 * in_n;
      const float* dy0 = dy + n0 * M * hw;
      // dY (M, s*HoWo): the group's dy planes side by side (dy itself for one sample).
      const bool gemm_pass =
          (dw_kernels == Kernels::Gemm && dws > 1) || (dx && dx_kernels == Kernels::Gemm);
      const float* dyc = dy0;
      if (s > 1 && gemm_pass) {
        for (int64_t i = 0; i < s; ++i)
          for (int64_t m = 0; m < M; ++m)
            std::copy(dy0 + (i * M + m) * hw, dy0 + (i * M + m + 1) * hw,
                      dyg + m * cols + i * hw);
        dyc = dyg;
      }
      // dw += dY (M, s*HoWo) * rows (s*HoWo, CKK), in GEMMs of dws samples reducing over every
      // position of theirs. The windows are unrolled as rows (im2row, the samples one after
      // another), so that the matrix is read in place, k-major, instead of being transposed.
      if (dw_direct || dw_wino)
        ;  // done above
      else if (col_is_input(g))
        sgemm(Trans::N, Trans::T, M, ckk, hw, 1.f, dyc, hw, x0, hw, 1.f, dw_t, ckk);
      else {
        for (int64_t i = 0; i < s; ++i) im2row_cpu(g, x0 + i * in_n, col + i * hw * ckk);
        for (int64_t i = 0; i < s; i += dws) {
          const int64_t k = std::min(dws, s - i) * hw;
          const bool gathered = dyc == dyg;
          sgemm(Trans::N, Trans::N, M, ckk, k, 1.f, gathered ? dyg + i * hw : dy0 + i * M * hw,
                gathered ? cols : hw, col + i * hw * ckk, ckk, 1.f, dw_t, ckk);
        }
      }
      if (db)
        for (int64_t i = 0; i < s; ++i) add_bias_grad(M, hw, dy0 + i * M * hw, db_t);
      if (!dx || dx_wino) continue;
      // dcol (CKK, s*HoWo) = w^T (CKK,M) * dY (M, s*HoWo), then folded back into each dx_n.
      float* dx0 = dx + n0 * in_n;
      if (dx_direct) {
        conv_direct::forward(gt, g.C, s, dy0, wf, nullptr, dx0, false);
      } else if (col_is_input(g)) {
        sgemm(Trans::T, Trans::N, ckk, hw, M, 1.f, w, ckk, dyc, hw, 0.f, dx0, hw);
      } else {
        sgemm(Trans::T, Trans::N, ckk, cols, M, 1.f, w, ckk, dyc, cols, 0.f, col, cols);
        for (int64_t i = 0; i < s; ++i) col2im_cpu(g, col + i * hw, dx0 + i * in_n, cols);
      }
      if (relu_mask)
        for (int64_t i = 0; i < s; ++i)
          relu_backward_cpu(in_n, x0 + i * in_n, dx0 + i * in_n, dx0 + i * in_n);
    }
#pragma omp barrier
    // Sum the partials in thread order, so a fixed thread count gives bit-identical results:
    // into dw and db, or into dU and db (dU turned into dw below).
#pragma omp for schedule(static)
    for (int64_t i = 0; i < dw_part + (db ? M : 0); ++i) {
      float s = 0.f;
      for (int u = 0; u < team; ++u) s += parts[u * per_thread + i];
      (i < dw_part ? (dw_wino ? dU[i] : dw[i]) : db[i - dw_part]) = s;
    }
  }
  if (dw_wino) conv_winograd::weights_from_transformed(M, g.C, dU, dw);
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t padding, bool bias)
    : C_(in_channels), M_(out_channels), K_(kernel), stride_(stride), pad_(padding) {
  if (C_ <= 0 || M_ <= 0 || K_ <= 0 || stride_ <= 0 || pad_ < 0)
    fail_value("Conv2d(in_channels=" + std::to_string(C_) + ", out_channels=" +
               std::to_string(M_) + ", kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + ", padding=" + std::to_string(pad_) +
               "): sizes and stride must be positive and padding non-negative");
  if (!fits_numel({M_, C_, K_, K_}) || stride_ > kMaxNumel || pad_ > kMaxNumel)
    fail_value("Conv2d(in_channels=" + std::to_string(C_) + ", out_channels=" +
               std::to_string(M_) + ", kernel_size=" + std::to_string(K_) + ", stride=" +
               std::to_string(stride_) + ", padding=" + std::to_string(pad_) +
               "): the weight would hold more than 2^40 elements, or stride or padding exceeds "
               "2^40");
  add_param("weight", Shape{M_, C_, K_, K_});
  if (bias) add_param("bias", Shape{M_});
}

ConvGeom Conv2d::geom(const Shape& in) const {
  return make_conv_geom(C_, in[2], in[3], K_, stride_, pad_);
}

Shape Conv2d::output_shape(const Shape& in) const {
  if (in.ndim != 4 || in[1] != C_)
    fail_shape("Conv2d(" + std::to_string(C_) + ", " + std::to_string(M_) + ") expects input (N, " +
               std::to_string(C_) + ", H, W), got " + in.str());
  in.check();  // every dim <= 2^40, so H + 2 * pad cannot overflow
  if (in[2] + 2 * pad_ < K_ || in[3] + 2 * pad_ < K_)
    fail_shape("Conv2d kernel " + std::to_string(K_) + " with padding " + std::to_string(pad_) +
               " does not fit input " + in.str());
  const ConvGeom g = geom(in);
  if (!fits_numel({in[0], M_, g.Ho, g.Wo}))
    fail_shape("Conv2d kernel " + std::to_string(K_) + ", stride " + std::to_string(stride_) +
               ", padding " + std::to_string(pad_) + " on input " + in.str() + " gives output (" +
               std::to_string(in[0]) + ", " + std::to_string(M_) + ", " + std::to_string(g.Ho) +
               ", " + std::to_string(g.Wo) + "), more than 2^40 elements");
  // The unrolled windows of the whole batch (N x C*K*K x Ho*Wo: the CUDA backward's col
  // matrix, and N times the CPU's per-thread one) must be addressable too, so that every
  // workspace product stays in range.
  if (!fits_numel({in[0], g.col_rows(), g.col_cols()}))
    fail_shape("Conv2d kernel " + std::to_string(K_) + " on input " + in.str() +
               ": the unrolled windows (N * C*K*K * Ho*Wo = " + std::to_string(in[0]) + " * " +
               std::to_string(g.col_rows()) + " * " + std::to_string(g.col_cols()) +
               ") exceed 2^40 elements");
  return Shape{in[0], M_, g.Ho, g.Wo};
}

size_t Conv2d::workspace_size_cpu(const Shape& in, int threads) const {
  const ConvGeom g = geom(in);
  return std::max(conv2d_forward_workspace_cpu(g, M_, threads),
                  conv2d_backward_workspace_cpu(g, M_, threads));
}

void Conv2d::forward_cpu(const Tensor& x, Tensor& y, float* ws) {
  conv2d_forward_cpu(geom(x.shape), x.shape[0], M_, x.data, weight(), bias(), y.data, ws,
                     fused_relu_);
}

void Conv2d::backward_cpu(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                          float* ws) {
  conv2d_backward_cpu(geom(x.shape), x.shape[0], M_, x.data, weight(), dy.data,
                      dx ? dx->data : nullptr, params_[0].grad.data(), bias_grad(), ws, masked_dx_);
}

}  // namespace hc
