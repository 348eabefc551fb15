// x (any shape) -> y (same shape)
#include "check.h"
#include "launch.h"
#include "ops_cuda.h"
#include "heterocnn/activation.h"

namespace hc {

namespace {

__global__ void relu_forward_kernel(int64_t n, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = relu(x[i]);
}

__global__ void relu_backward_kernel(int64_t n, const float* __restrict__ y,
                                     const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

__global__ void sigmoid_forward_kernel(int64_t n, const float* __restrict__ x,
                                       float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = sigmoid(x[i]);
}

__global__ void sigmoid_backward_kernel(int64_t n, const float* __restrict__ y,
                                        const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = dy[i] * y[i] * (1.f - y[i]);
}

__global__ void tanh_forward_kernel(int64_t n, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = tanhf(x[i]);
}

__global__ void tanh_backward_kernel(int64_t n, const float* __restrict__ y,
                                     const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = dy[i] * (1.f - y[i] * y[i]);
}

__global__ void leaky_relu_forward_kernel(int64_t n, float slope, const float* __restrict__ x,
                                          float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float v = x[i];
    y[i] = v > 0.f ? v : slope * v;  // NaN stays NaN, as on the CPU
  }
}

__global__ void leaky_relu_backward_kernel(int64_t n, float slope, const float* __restrict__ x,
                                           const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    const float g = dy[i];
    dx[i] = x[i] > 0.f ? g : slope * g;
  }
}

__global__ void gelu_forward_kernel(int64_t n, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = gelu(x[i]);
}

__global__ void gelu_backward_kernel(int64_t n, const float* __restrict__ x,
                                     const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = dy[i] * gelu_grad(x[i]);
}

__global__ void gelu_tanh_forward_kernel(int64_t n, const float* __restrict__ x,
                                         float* __restrict__ y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = gelu_tanh(x[i]);
}

__global__ void gelu_tanh_backward_kernel(int64_t n, const float* __restrict__ x,
                                          const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    dx[i] = dy[i] * gelu_tanh_grad(x[i]);
}

}  // namespace

void relu_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  relu_forward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, y);
  HC_CUDA_CHECK_LAUNCH("relu_forward_kernel");
}

void relu_backward_cuda(int64_t n, const float* y, const float* dy, float* dx,
                        cudaStream_t stream) {
  if (n <= 0) return;
  relu_backward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, y, dy, dx);
  HC_CUDA_CHECK_LAUNCH("relu_backward_kernel");
}

void sigmoid_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  sigmoid_forward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, y);
  HC_CUDA_CHECK_LAUNCH("sigmoid_forward_kernel");
}

void sigmoid_backward_cuda(int64_t n, const float* y, const float* dy, float* dx,
                           cudaStream_t stream) {
  if (n <= 0) return;
  sigmoid_backward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, y, dy, dx);
  HC_CUDA_CHECK_LAUNCH("sigmoid_backward_kernel");
}

void tanh_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  tanh_forward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, y);
  HC_CUDA_CHECK_LAUNCH("tanh_forward_kernel");
}

void tanh_backward_cuda(int64_t n, const float* y, const float* dy, float* dx,
                        cudaStream_t stream) {
  if (n <= 0) return;
  tanh_backward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, y, dy, dx);
  HC_CUDA_CHECK_LAUNCH("tanh_backward_kernel");
}

void leaky_relu_forward_cuda(int64_t n, float slope, const float* x, float* y,
                             cudaStream_t stream) {
  if (n <= 0) return;
  leaky_relu_forward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, slope, x, y);
  HC_CUDA_CHECK_LAUNCH("leaky_relu_forward_kernel");
}

void leaky_relu_backward_cuda(int64_t n, float slope, const float* x, const float* dy, float* dx,
                              cudaStream_t stream) {
  if (n <= 0) return;
  leaky_relu_backward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, slope, x, dy, dx);
  HC_CUDA_CHECK_LAUNCH("leaky_relu_backward_kernel");
}

void gelu_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_forward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, y);
  HC_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

void gelu_backward_cuda(int64_t n, const float* x, const float* dy, float* dx,
                        cudaStream_t stream) {
  if (n <= 0) return;
  gelu_backward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, dy, dx);
  HC_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

void gelu_tanh_forward_cuda(int64_t n, const float* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  gelu_tanh_forward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, y);
  HC_CUDA_CHECK_LAUNCH("gelu_tanh_forward_kernel");
}

void gelu_tanh_backward_cuda(int64_t n, const float* x, const float* dy, float* dx,
                             cudaStream_t stream) {
  if (n <= 0) return;
  gelu_tanh_backward_kernel<<<op_blocks(n), kOpThreads, 0, stream>>>(n, x, dy, dx);
  HC_CUDA_CHECK_LAUNCH("gelu_tanh_backward_kernel");
}

// The layers on their CUDA device (the CPU side is in core/src/activation.cpp).

void ReLU::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  relu_forward_cuda(x.numel(), x.data, y.data, stream);
}

void ReLU::backward_cuda(const Tensor&, const Tensor& y, const Tensor& dy, Tensor* dx, float*,
                         cudaStream_t stream) {
  if (dx) relu_backward_cuda(y.numel(), y.data, dy.data, dx->data, stream);
}

void Sigmoid::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  sigmoid_forward_cuda(x.numel(), x.data, y.data, stream);
}

void Sigmoid::backward_cuda(const Tensor&, const Tensor& y, const Tensor& dy, Tensor* dx, float*,
                            cudaStream_t stream) {
  if (dx) sigmoid_backward_cuda(y.numel(), y.data, dy.data, dx->data, stream);
}

void Tanh::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  tanh_forward_cuda(x.numel(), x.data, y.data, stream);
}

void Tanh::backward_cuda(const Tensor&, const Tensor& y, const Tensor& dy, Tensor* dx, float*,
                         cudaStream_t stream) {
  if (dx) tanh_backward_cuda(y.numel(), y.data, dy.data, dx->data, stream);
}

void LeakyReLU::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  leaky_relu_forward_cuda(x.numel(), slope_, x.data, y.data, stream);
}

void LeakyReLU::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx,
                              float*, cudaStream_t stream) {
  if (dx) leaky_relu_backward_cuda(x.numel(), slope_, x.data, dy.data, dx->data, stream);
}

void GELU::forward_cuda(const Tensor& x, Tensor& y, float*, cudaStream_t stream) {
  (tanh_ ? gelu_tanh_forward_cuda : gelu_forward_cuda)(x.numel(), x.data, y.data, stream);
}

void GELU::backward_cuda(const Tensor& x, const Tensor&, const Tensor& dy, Tensor* dx, float*,
                         cudaStream_t stream) {
  if (dx)
    (tanh_ ? gelu_tanh_backward_cuda : gelu_backward_cuda)(x.numel(), x.data, dy.data, dx->data,
                                                           stream);
}

}  // namespace hc
