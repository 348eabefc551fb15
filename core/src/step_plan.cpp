#include "heterocnn/step_plan.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "heterocnn/error.h"
#include "heterocnn/param_store.h"

namespace hc {

namespace {

// Raises the entry for `place` in `sizes` to at least n.
void grow(std::vector<PlaceCount>& sizes, Place place, size_t n) {
  for (PlaceCount& s : sizes) {
    if (s.place == place) {
      s.count = std::max(s.count, n);
      return;
    }
  }
  sizes.push_back(PlaceCount{place, n});
}

void add(std::vector<PlaceCount>& sizes, Place place, size_t n) {
  for (PlaceCount& s : sizes) {
    if (s.place == place) {
      s.count += n;
      return;
    }
  }
  sizes.push_back(PlaceCount{place, n});
}

size_t floats(const Shape& s) { return static_cast<size_t>(s.numel()); }

bool read_relu_fusion() {
  const char* v = std::getenv("HC_RELU_FUSION");
  const std::string s = v ? v : "";
  if (s != "" && s != "0" && s != "1")
    fail_value("HC_RELU_FUSION must be 0 (no ReLU fusion) or 1 (the default), got '" + s + "'");
  return s != "0";
}

}  // namespace

bool relu_fusion_enabled() {
  static const bool on = read_relu_fusion();
  return on;
}

Shape chain_output_shape(const std::vector<std::unique_ptr<Layer>>& layers, LossKind loss,
                         const Shape& in) {
  if (layers.empty()) fail_value("the net has no layers");
  Shape s = in;
  for (size_t i = 0; i < layers.size(); ++i) {
    try {
      s = layers[i]->output_shape(s);
    } catch (const Error& e) {
      fail(e.kind(), "layer " + std::to_string(i) + " (" + layers[i]->kind() + "): " + e.what());
    }
  }
  if (loss == LossKind::BCE && (s.ndim != 2 || s[1] != 1))
    fail_shape("loss 'bce' needs a single output per sample, but the net outputs " + s.str());
  if (s.ndim != 2) fail_shape("the net must end in (N, classes), but it outputs " + s.str());
  return s;
}

StepPlan make_step_plan(const std::vector<std::unique_ptr<Layer>>& layers, LossKind loss,
                        const Shape& in, int threads, StepMode mode) {
  if (in.ndim < 2 || in[0] <= 0)
    fail_shape("input must be (N, ...) with N >= 1, got " + in.str());
  chain_output_shape(layers, loss, in);  // validates the chain; its errors name the layer
  const size_t L = layers.size();
  const bool train = mode == StepMode::Train;
  StepPlan p;
  p.mode = mode;
  p.in = in;
  p.threads = threads;
  Shape s = in;
  bool earlier_params = false;
  for (size_t i = 0; i < L; ++i) {
    const Layer& layer = *layers[i];
    p.shapes.push_back(s = layer.output_shape(s));
    p.places.push_back(layer.place());
    p.needs_dx.push_back(earlier_params);
    if (!layer.param_counts().empty()) earlier_params = true;
  }
  // Views stay with their input; leading views stay with the staged batch, which goes to the
  // first computing layer's place (so a Flatten before a CUDA layer flattens device memory).
  p.input_place = Place{};
  for (const auto& layer : layers) {
    if (!layer->is_view()) {
      p.input_place = layer->place();
      break;
    }
  }
  Place at = p.input_place;
  for (size_t i = 0; i < L; ++i) {
    if (!layers[i]->is_view()) at = layers[i]->place();
    p.act_places.push_back(at);
  }
  // Fusion: a ReLU computed in the epilogue of the layer before it on the same place, and a
  // ReLU whose backward the next layer on the same place applies to its dx (neither with
  // HC_RELU_FUSION=0).
  p.fused.assign(L, false);
  p.masked.assign(L, false);
  const bool fuse = relu_fusion_enabled();
  for (size_t i = 0; fuse && i + 1 < L; ++i)
    p.fused[i + 1] = layers[i]->can_fuse_relu() && layers[i + 1]->kind() == "ReLU" &&
                     layers[i + 1]->place() == layers[i]->place();
  for (size_t i = 1; fuse && i < L; ++i)
    if (layers[i - 1]->kind() == "ReLU" && layers[i]->can_mask_dx() &&
        layers[i - 1]->place() == layers[i]->place())
      p.masked[i - 1] = true;

  p.out_count.assign(L, 0);
  p.stage_count.assign(L, 0);
  const size_t slots = train ? 2 : 1;
  if (p.input_place.device != Device::CPU) p.stage_count[0] = slots * floats(in);
  std::vector<PlaceCount> acts;  // per place, the largest activation (sizes the gradients)
  grow(acts, p.input_place, floats(in));
  for (size_t i = 0; i < L; ++i) {
    if (layers[i]->is_view()) continue;
    const Shape& xs = i == 0 ? in : p.shapes[i - 1];
    const Place here = p.places[i];
    if (!p.fused[i]) p.out_count[i] = floats(p.shapes[i]);
    if (i > 0 && p.act_places[i - 1] != here) {
      p.stage_count[i] = floats(xs);
      p.crossings.push_back(Crossing{i, p.act_places[i - 1], here, floats(xs)});
    }
    grow(acts, here, std::max(floats(xs), floats(p.shapes[i])));
    grow(p.workspace_count, here, layers[i]->workspace_size(xs, threads));
  }
  if (train) p.grad_count = acts;
  for (size_t i = 0; i < L; ++i)
    for (const size_t n : layers[i]->param_counts()) add(p.param_count, p.places[i], ParamStore::padded(n));
  return p;
}

std::vector<Place> StepPlan::used_places() const {
  std::vector<Place> out;
  auto note = [&](Place p) {
    if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  };
  note(input_place);
  for (const Place& p : places) note(p);
  return out;
}

}  // namespace hc
