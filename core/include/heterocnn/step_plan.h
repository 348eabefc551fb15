// The plan of a step: everything that follows from the chain of layers, their places and the
// input shape, computed once per (placement, input shape, mode) by a pure function and never
// changed after. The net allocates and runs by it; the memory estimate and the placement
// planner read it. Nothing else decides sizes.
//
//   train: forward, loss, backward (two gradient buffers per place, ping-ponged);
//   infer: forward only (no gradient buffers, one input slot).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "heterocnn/layer.h"
#include "heterocnn/loss.h"

namespace hc {

enum class StepMode { Train, Infer };

// Floats of one buffer kind on one place.
struct PlaceCount {
  Place place;
  size_t count;
};

// An activation that moves between places: layer `layer`'s input is made on `from` and read
// on `to` (in training its gradient comes back the same way). An explicit transfer step.
struct Crossing {
  size_t layer;
  Place from, to;
  size_t count;  // floats
};

struct StepPlan {
  StepMode mode = StepMode::Train;
  Shape in;
  int threads = 1;
  std::vector<Shape> shapes;      // output of each layer
  std::vector<Place> places;      // where each layer runs
  std::vector<Place> act_places;  // where each layer's output lives (a view stays with its input)
  Place input_place;              // where the batch is staged: the first computing layer's place
  std::vector<bool> fused;        // a ReLU computed by the layer before it (see Layer)
  std::vector<bool> masked;       // a ReLU whose backward the layer after it applies
  std::vector<bool> needs_dx;     // some earlier layer has parameters
  std::vector<Crossing> crossings;
  // Buffer sizes in floats. out_count[i]: layer i's output (0 for a view or a fused ReLU);
  // stage_count[i]: layer i's input staged on its place (0 when it needs none; [0] is the
  // batch, two slots on a GPU in training so one uploads while the other computes).
  std::vector<size_t> out_count, stage_count;
  std::vector<PlaceCount> grad_count;       // each of the two gradient buffers, per place
  std::vector<PlaceCount> workspace_count;  // per place
  std::vector<PlaceCount> param_count;      // the parameter store's span per place

  const Shape& output() const { return shapes.back(); }
  Place output_place() const { return act_places.back(); }
  // The places the plan uses, in first-use order.
  std::vector<Place> used_places() const;
};

// Whether plans fuse ReLUs: a ReLU computed in the epilogue of the layer before it (Conv2d,
// Linear, BatchNorm) and a ReLU's backward applied by the layer after it. On unless the
// environment variable HC_RELU_FUSION is "0" (for measuring what fusion gains; the results
// are the same either way), read once, at the first call (heterocnn's import calls it, via
// build_info). A value other than unset, "", "0" or "1" is a Value error.
bool relu_fusion_enabled();

// The plan for `layers` as placed, on input `in`, with `threads` CPU threads. Throws a Shape
// error naming the first layer that does not accept its input.
StepPlan make_step_plan(const std::vector<std::unique_ptr<Layer>>& layers, LossKind loss,
                        const Shape& in, int threads, StepMode mode);

// The output shape of the chain for input `in` (validating it, as make_step_plan does).
Shape chain_output_shape(const std::vector<std::unique_ptr<Layer>>& layers, LossKind loss,
                         const Shape& in);

}  // namespace hc
