// Losses, each a mean over the batch, computed with their gradient in one pass.
//   softmax cross-entropy: logits (N,K), labels (N,) in [0,K) -> loss, dlogits = (softmax - q)/N
//     with target q = (1 - eps) * onehot + eps / K (label smoothing eps; 0: q = onehot)
//   sigmoid BCE:           logits (N,1), labels (N,) in {0,1} -> loss, dlogits = (sigmoid - y)/N
// as torch.nn.CrossEntropyLoss and torch.nn.BCEWithLogitsLoss. Each also counts the samples
// whose prediction matches the label (argmax, or logit > 0), for training accuracy.
#pragma once
#include <cstdint>

namespace hc {

enum class LossKind { CrossEntropy, BCE };

struct LossResult {
  double loss = 0.0;
  int64_t correct = 0;
};

// dlogits may be null (evaluation only); it is the gradient of the mean loss times
// grad_scale (a replica's share of a larger batch: its sub-batch size over the batch's).
// label_smoothing in [0, 1] (checked by the Net): torch's CrossEntropyLoss(label_smoothing).
LossResult softmax_cross_entropy_cpu(int64_t N, int64_t K, const float* logits,
                                     const int64_t* labels, float* dlogits,
                                     float grad_scale = 1.f, float label_smoothing = 0.f);
LossResult sigmoid_bce_cpu(int64_t N, const float* logits, const int64_t* labels,
                           float* dlogits, float grad_scale = 1.f);

}  // namespace hc
