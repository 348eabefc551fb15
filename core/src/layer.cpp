#include "heterocnn/layer.h"

#include <algorithm>
#include <cmath>

#include "heterocnn/activation.h"
#include "heterocnn/batchnorm.h"
#include "heterocnn/avgpool2d.h"
#include "heterocnn/conv2d.h"
#include "heterocnn/dropout.h"
#include "heterocnn/cuda_api.h"
#include "heterocnn/error.h"
#include "heterocnn/flatten.h"
#include "heterocnn/linear.h"
#include "heterocnn/maxpool2d.h"

namespace hc {

size_t Layer::workspace_size_cpu(const Shape&, int) const { return 0; }
#ifdef HC_WITH_CUDA
size_t Layer::workspace_size_cuda(const Shape&) const { return 0; }
#endif

#ifndef HC_WITH_CUDA
namespace {
[[noreturn]] void no_cuda(const std::string& kind) {
  fail(ErrorKind::Device, kind + " is placed on a CUDA device, but heterocnn was built without CUDA");
}
}  // namespace
#endif

size_t Layer::workspace_size(const Shape& in, int threads) const {
  size_t n = 0;
  switch (place_.device) {
    case Device::CPU:
      n = workspace_size_cpu(in, threads);
      break;
    case Device::CUDA:
#ifdef HC_WITH_CUDA
      n = workspace_size_cuda(in);
      break;
#else
      no_cuda(kind());
#endif
  }
  // Bounded like every other size (shape.h), with room for one part per thread, so that the
  // net's byte counts and sums over its buffers stay in range.
  constexpr size_t kMaxWorkspace = static_cast<size_t>(kMaxNumel) << 10;
  if (n > kMaxWorkspace)
    fail_shape(kind() + " on input " + in.str() + " with " + std::to_string(threads) +
               " threads needs a workspace of " + std::to_string(n) + " floats, more than 2^50");
  return n;
}

void Layer::init_params(Rng& rng) {
  for (Param& p : params_) {
    if (p.name == "bias") {
      p.value.zero();
      continue;
    }
    // fan_in: every weight dim but the first (out_features / out_channels).
    const double std = std::sqrt(2.0 / static_cast<double>(p.shape.sample_numel()));
    // Drawn on the host in chunks (no second full-size copy), then copied to the place.
    const size_t n = static_cast<size_t>(p.shape.numel());
    std::vector<float> host(std::min(n, size_t{1} << 20));
    for (size_t at = 0; at < n; at += host.size()) {
      const size_t m = std::min(host.size(), n - at);
      for (size_t i = 0; i < m; ++i) host[i] = static_cast<float>(std * rng.normal());
      copy_floats(p.value.data() + at, p.value.place(), host.data(), Place{}, m);
    }
  }
}

#ifdef HC_WITH_CUDA
namespace {
cudaStream_t stream_or_default(void* stream, int device) {
  return static_cast<cudaStream_t>(stream ? stream : cuda::stream(device));
}
}  // namespace
#endif

void Layer::forward(const Tensor& x, Tensor& y, float* ws, void* stream) {
  switch (place_.device) {
    case Device::CPU:
      return forward_cpu(x, y, ws);
    case Device::CUDA:
#ifdef HC_WITH_CUDA
      cuda::use_device(place_.index);
      return forward_cuda(x, y, ws, stream_or_default(stream, place_.index));
#else
      (void)stream;
      no_cuda(kind());
#endif
  }
}

void Layer::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx, float* ws,
                     void* stream) {
  switch (place_.device) {
    case Device::CPU:
      return backward_cpu(x, y, dy, dx, ws);
    case Device::CUDA:
#ifdef HC_WITH_CUDA
      cuda::use_device(place_.index);
      return backward_cuda(x, y, dy, dx, ws, stream_or_default(stream, place_.index));
#else
      (void)stream;
      no_cuda(kind());
#endif
  }
}

std::vector<size_t> Layer::param_counts() const {
  std::vector<size_t> out;
  for (const Param& p : params_) out.push_back(static_cast<size_t>(p.shape.numel()));
  return out;
}

Param& Layer::add_param(const std::string& name, Shape shape) {
  Param p;
  p.name = name;
  p.shape = shape;
  p.value = Buffer(shape.numel(), place_);
  p.grad = Buffer(shape.numel(), place_);
  p.value.zero();
  p.grad.zero();
  params_.push_back(std::move(p));
  return params_.back();
}

LayerBuffer& Layer::add_buffer(const std::string& name, Shape shape, bool is_int64,
                               bool persistent, bool scratch) {
  LayerBuffer b;
  b.name = name;
  b.shape = shape;
  b.is_int64 = is_int64;
  b.persistent = persistent;
  b.scratch = scratch;
  const size_t n = shape.ndim == 0 ? 1 : static_cast<size_t>(shape.numel());  // 0-d: a scalar
  b.value = Buffer(is_int64 ? floats_for<int64_t>(n) : n, place_);
  b.value.zero();
  buffers_.push_back(std::move(b));
  return buffers_.back();
}

std::vector<Buffer> Layer::moved_buffers(Place place) const {
  std::vector<Buffer> out;
  for (const LayerBuffer& b : buffers_) out.push_back(b.value.copy_to(place));
  return out;
}

void Layer::adopt_buffers(std::vector<Buffer> values) {
  if (values.size() != buffers_.size())
    fail_value(kind() + ": " + std::to_string(values.size()) + " buffers for " +
               std::to_string(buffers_.size()));
  for (size_t k = 0; k < values.size(); ++k) buffers_[k].value = std::move(values[k]);
}

namespace {

// The spec of `kind` has n arguments (or from `least` to n, the later ones optional).
void expect_args(const std::string& kind, const std::vector<double>& args, size_t n,
                 size_t least = static_cast<size_t>(-1)) {
  least = std::min(least, n);
  if (args.size() < least || args.size() > n)
    fail_value(kind + " takes " +
               (least == n ? std::to_string(n) : std::to_string(least) + " to " + std::to_string(n)) +
               " arguments, got " + std::to_string(args.size()));
}

// Argument i of a spec as an integer (the layer's constructor checks its range).
int64_t int_arg(const std::string& kind, const std::vector<double>& args, size_t i) {
  const double v = args[i];
  if (!(std::fabs(v) <= 0x1p62) || v != std::floor(v))
    fail_value(kind + ": argument " + std::to_string(i) + " must be an integer, got " +
               std::to_string(v));
  return static_cast<int64_t>(v);
}

// Argument i of a spec as a flag (0 or 1), or `absent` when the spec stops before it.
bool flag_arg(const std::string& kind, const std::vector<double>& args, size_t i, bool absent) {
  if (i >= args.size()) return absent;
  const double v = args[i];
  if (v != 0.0 && v != 1.0)
    fail_value(kind + ": argument " + std::to_string(i) + " must be 0 or 1, got " +
               std::to_string(v));
  return v == 1.0;
}

}  // namespace

std::unique_ptr<Layer> make_layer(const std::string& kind, const std::vector<double>& a) {
  auto n = [&](size_t i) { return int_arg(kind, a, i); };
  if (kind == "Linear") {  // the bias flag is optional: older specs have 2 arguments
    expect_args(kind, a, 3, 2);
    return std::make_unique<Linear>(n(0), n(1), flag_arg(kind, a, 2, true));
  }
  if (kind == "Conv2d") {  // the bias flag is optional: older specs have 5 arguments
    expect_args(kind, a, 6, 5);
    return std::make_unique<Conv2d>(n(0), n(1), n(2), n(3), n(4), flag_arg(kind, a, 5, true));
  }
  if (kind == "MaxPool2d") {
    expect_args(kind, a, 2);
    return std::make_unique<MaxPool2d>(n(0), n(1));
  }
  if (kind == "Flatten") {
    expect_args(kind, a, 0);
    return std::make_unique<Flatten>();
  }
  if (kind == "ReLU") {
    expect_args(kind, a, 0);
    return std::make_unique<ReLU>();
  }
  if (kind == "Sigmoid") {
    expect_args(kind, a, 0);
    return std::make_unique<Sigmoid>();
  }
  // Normalisation and dropout: BatchNorm2d/1d(num_features, eps, momentum, affine[,
  // cumulative]) (the cumulative flag, torch's momentum=None, is optional: older specs have 4
  // arguments), Dropout/Dropout2d(p).
  if (kind == "BatchNorm2d" || kind == "BatchNorm1d") {
    expect_args(kind, a, 5, 4);
    const int64_t affine = n(3);
    if (affine != 0 && affine != 1) fail_value(kind + ": affine must be 0 or 1");
    return std::make_unique<BatchNorm>(kind == "BatchNorm2d" ? 2 : 1, n(0), a[1], a[2],
                                       affine == 1, flag_arg(kind, a, 4, false));
  }
  if (kind == "Dropout" || kind == "Dropout2d") {
    expect_args(kind, a, 1);
    return std::make_unique<Dropout>(a[0], kind == "Dropout2d");
  }
  if (kind == "AvgPool2d") {
    expect_args(kind, a, 3);
    return std::make_unique<AvgPool2d>(n(0), n(1), n(2));
  }
  if (kind == "AdaptiveAvgPool2d") {
    expect_args(kind, a, 1);
    return std::make_unique<AdaptiveAvgPool2d>(n(0));
  }
  if (kind == "Tanh") {
    expect_args(kind, a, 0);
    return std::make_unique<Tanh>();
  }
  if (kind == "LeakyReLU") {
    expect_args(kind, a, 1);
    return std::make_unique<LeakyReLU>(a[0]);
  }
  if (kind == "GELU") {  // the tanh flag is optional: older specs have no argument
    expect_args(kind, a, 1, 0);
    return std::make_unique<GELU>(flag_arg(kind, a, 0, false));
  }
  fail_value("unknown layer kind '" + kind + "'");
}

}  // namespace hc
