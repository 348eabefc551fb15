// The layer ops on the GPU: one .cu per core .cpp, the same names with _cuda instead of _cpu,
// the same arguments in the same order, then (where the GPU needs one) a workspace pointer and
// always a trailing stream. Every pointer is device memory unless said otherwise; sizes are
// floats. Each function only enqueues work on `stream` (and on a side branch joined back into
// it, side_branch.h; no allocation, no synchronisation, so a step can be captured in a CUDA graph) and throws hc::Error on a bad argument or a CUDA error.
// Every result is deterministic: no floating-point atomics anywhere.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "gemm_cuda.h"
#include "heterocnn/batchnorm.h"
#include "heterocnn/im2col.h"
#include "heterocnn/adam.h"
#include "heterocnn/loss.h"
#include "heterocnn/sgd.h"

namespace hc {

// ---- im2col.cu: whole batch at once (unlike the CPU's one image per call).
//   im2col: x (N,C,H,W) -> col (C*K*K, N*Ho*Wo): column n*Ho*Wo + p is pixel p of image n.
//   col2im: col (C*K*K, N*Ho*Wo) -> x (N,C,H,W), overwritten; one thread per input pixel
//           gathers its contributions in (kh, kw) order, so it is deterministic (no atomics).
void im2col_cuda(const ConvGeom& g, int64_t N, const float* x, float* col, cudaStream_t stream);
void col2im_cuda(const ConvGeom& g, int64_t N, const float* col, float* x, cudaStream_t stream);
//   the same, x = mask > 0 ? x : 0 with mask (N,C,H,W) (null: no mask).
void col2im_masked_cuda(const ConvGeom& g, int64_t N, const float* col, const float* mask,
                        float* x, cudaStream_t stream);

// ---- conv2d.cu: x (N,C,H,W), w (M,C,K,K), b (M,) -> y (N,M,Ho,Wo) (b and db null for a
// convolution without bias, and so in linear.cu); ws holds the workspace
// floats that the matching *_workspace_cuda function returns (may be null when it returns 0).
size_t conv2d_forward_workspace_cuda(const ConvGeom& g, int64_t N, int64_t M);
size_t conv2d_backward_workspace_cuda(const ConvGeom& g, int64_t N, int64_t M);
void conv2d_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x, const float* w,
                         const float* b, float* y, float* ws, cudaStream_t stream);
// The same with ReLU fused into the GEMM epilogue: y = relu(conv(x) + b).
void conv2d_relu_forward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                              const float* w, const float* b, float* y, float* ws,
                              cudaStream_t stream);
// dx may be null (first layer). dw and db are overwritten. relu_mask: dx = x > 0 ? dx : 0, also
// the backward of a ReLU whose output x is (the ReLU's own backward is then skipped; see
// Layer::set_masked_dx). The same holds for every relu_mask below.
void conv2d_backward_cuda(const ConvGeom& g, int64_t N, int64_t M, const float* x,
                          const float* w, const float* dy, float* dx, float* dw, float* db,
                          float* ws, bool relu_mask, cudaStream_t stream);

// ---- linear.cu: x (N,I), w (O,I), b (O,) -> y (N,O); bias fused into the GEMM epilogue.
// ws (optional, may be null): linear_forward_workspace_cuda floats; with it a small batch
// against a wide input is computed as a deterministic split-K GEMM (much faster, same result
// to rounding).
size_t linear_forward_workspace_cuda(int64_t N, int64_t I, int64_t O);
void linear_forward_cuda(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                         const float* b, float* y, float* ws, cudaStream_t stream);
// y = relu(x w^T + b) in one GEMM.
void linear_relu_forward_cuda(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                              const float* b, float* y, float* ws, cudaStream_t stream);
// dx may be null (first layer). dw and db are overwritten.
void linear_backward_cuda(int64_t N, int64_t I, int64_t O, const float* x, const float* w,
                          const float* dy, float* dx, float* dw, float* db, bool relu_mask,
                          cudaStream_t stream);

// ---- maxpool2d.cu: x (P=N*C planes, H, W) -> y (P, Ho, Wo), first maximum wins, NaN wins.
void maxpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            const float* x, float* y, cudaStream_t stream);
// dx is overwritten: one thread per input pixel gathers, or (stride == K) one thread per
// window writes its K*K pixels; deterministic, no atomics.
void maxpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                             const float* x, const float* dy, float* dx, bool relu_mask,
                             cudaStream_t stream);

// ---- avgpool2d.cu: x (P=N*C planes, H, W) -> y (P, Ho, Wo).
//   AvgPool2d: K x K windows moved by `stride` over the input padded by `pad` zeros, divided by
//   K*K (the padding counted, floor mode). AdaptiveAvgPool2d: out x out windows
//   [floor(i*H/out), ceil((i+1)*H/out)) divided by their size; out == 1 (global average
//   pooling) is one warp per plane. dx is overwritten (one thread per input pixel gathers, no
//   atomics); relu_mask as for maxpool2d.
void avgpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                            int64_t pad, const float* x, float* y, cudaStream_t stream);
void avgpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t K, int64_t stride,
                             int64_t pad, const float* x, const float* dy, float* dx,
                             bool relu_mask, cudaStream_t stream);
void adaptive_avgpool2d_forward_cuda(int64_t P, int64_t H, int64_t W, int64_t out,
                                     const float* x, float* y, cudaStream_t stream);
void adaptive_avgpool2d_backward_cuda(int64_t P, int64_t H, int64_t W, int64_t out,
                                      const float* x, const float* dy, float* dx,
                                      bool relu_mask, cudaStream_t stream);

// ---- activation.cu: x (n) -> y (n); backward from the forward's output y.
void relu_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream);
void relu_backward_cuda(int64_t n, const float* y, const float* dy, float* dx,
                        cudaStream_t stream);
void sigmoid_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream);
void sigmoid_backward_cuda(int64_t n, const float* y, const float* dy, float* dx,
                           cudaStream_t stream);
void tanh_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream);
void tanh_backward_cuda(int64_t n, const float* y, const float* dy, float* dx,
                        cudaStream_t stream);
//   LeakyReLU and GELU: backward from the forward's input x.
void leaky_relu_forward_cuda(int64_t n, float slope, const float* x, float* y,
                             cudaStream_t stream);
void leaky_relu_backward_cuda(int64_t n, float slope, const float* x, const float* dy, float* dx,
                              cudaStream_t stream);
void gelu_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream);
void gelu_backward_cuda(int64_t n, const float* x, const float* dy, float* dx,
                        cudaStream_t stream);
void gelu_tanh_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream);
void gelu_tanh_backward_cuda(int64_t n, const float* x, const float* dy, float* dx,
                             cudaStream_t stream);

// ---- batchnorm.cu: x (N,C,S) -> y (N,C,S), as batchnorm_forward_cpu/backward_cpu
// (heterocnn/batchnorm.h); ws holds batchnorm_workspace_cuda floats.
size_t batchnorm_workspace_cuda(int64_t N, int64_t C, int64_t S);
void batchnorm_forward_cuda(const BatchNormArgs& a, const float* x, const float* weight,
                            const float* bias, float* running_mean, float* running_var,
                            int64_t* num_batches_tracked, float* stats, float* y, float* ws,
                            cudaStream_t stream);
void batchnorm_backward_cuda(const BatchNormArgs& a, const float* x, const float* weight,
                             const float* stats, const float* dy, float* dx, float* dweight,
                             float* dbias, float* ws, cudaStream_t stream);

// ---- dropout.cu: x (n) -> y (n), as dropout_forward_cpu/advance_cpu (heterocnn/dropout.h);
// state = {seed, step} in device memory.
void dropout_forward_cuda(int64_t n, int64_t group, const float* x, float* y,
                          const int64_t* state, uint64_t stream_key, uint32_t keep_below,
                          float scale, cudaStream_t stream);
void dropout_advance_cuda(int64_t* state, cudaStream_t stream);

// ---- loss.cu: one launch each, loss and gradient together. The mean loss and the count of
// correct predictions are written to *result (device memory; copy it back with
// cudaMemcpyAsync(&host, result, sizeof(LossResult), ...)). The loss is summed in a fixed order
// (no atomics). labels are int64 on the device; a label outside [0,K) (or not 0/1 for BCE) makes
// the loss NaN. dlogits may be null (evaluation only).
//   softmax CE: logits (N,K), labels (N,) -> dlogits (N,K) = (softmax - q)/N, the target
//     q = (1 - label_smoothing) * onehot + label_smoothing / K
//   sigmoid BCE: logits (N,1), labels (N,) -> dlogits (N,1) = (sigmoid - y)/N
void softmax_cross_entropy_cuda(int64_t N, int64_t K, const float* logits,
                                const int64_t* labels, float* dlogits, LossResult* result,
                                float grad_scale, float label_smoothing, cudaStream_t stream);
void sigmoid_bce_cuda(int64_t N, const float* logits, const int64_t* labels, float* dlogits,
                      LossResult* result, float grad_scale, cudaStream_t stream);

// ---- sgd.cu: p (n), g (n, left as it was), v (n, the momentum; unused when momentum == 0):
// one launch over a flat span (a device's parameter store). The hyper-parameters are read from
// device memory (`cfg`, checked by the caller with validate()), so a captured step picks up a
// changed learning rate.
struct SgdTensorCuda {
  float* p;
  const float* g;
  float* v;
  int64_t n;
};
void sgd_update_cuda(int64_t n, float* p, const float* g, float* v, const SgdConfig* cfg,
                     cudaStream_t stream);

// ---- adam.cu: p (n), g (n, left as it was), m, v (n, exp_avg and exp_avg_sq): one launch
// over a flat span (a device's parameter store), the step's coefficients read from device
// memory (`step`, written by Adam::write_config), so a captured step picks up a new learning
// rate and step count.
void adam_update_cuda(int64_t n, float* p, const float* g, float* m, float* v,
                      const AdamStep* step, cudaStream_t stream);

// ---- reduce.cu: y (n) += x (n), element by element.
void add_into_cuda(int64_t n, float* y, const float* x, cudaStream_t stream);

// ---- dataset.cu: a training batch gathered from a data set held on the device.
//   images (N, S) uint8 (scaled by 1/255) or float32, labels (N,), idx (n,) on the device
//   -> x (n, S) float32, y (n,) int64
void gather_batch_cuda(const void* images, bool uint8, int64_t S, const int64_t* labels,
                       const int64_t* idx, int64_t n, float* x, int64_t* y, cudaStream_t stream);

}  // namespace hc
