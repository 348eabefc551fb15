"""What a model's logits mean: probabilities, predicted labels and the per-sample loss, for
softmax cross-entropy and sigmoid binary cross-entropy. NumPy, float64 inside."""

import numpy as np


def log_softmax(logits):
    """log softmax over the last axis, stable (the maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def probabilities(logits, loss):
    """float32 probabilities: softmax over the classes for "cross_entropy" (N, K) -> (N, K),
    the sigmoid of the one output for "bce" (N, 1) -> (N, 1), P(label 1)."""
    if loss == "bce":
        z = np.asarray(logits, dtype=np.float64)
        return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # sigmoid without overflow
    return np.exp(log_softmax(logits)).astype(np.float32)


def class_probabilities(logits, loss):
    """(N, classes) probabilities of every class: for "bce", [P(0), P(1)]."""
    p = probabilities(logits, loss)
    return np.concatenate([1 - p, p], axis=1) if loss == "bce" else p


def predicted_labels(logits, loss):
    """int64 (N,): argmax of the logits for cross-entropy (the first of equal maxima),
    logit > 0 for bce."""
    if loss == "bce":
        return (np.asarray(logits)[:, 0] > 0).astype(np.int64)
    return np.asarray(logits).argmax(axis=1)


def sample_losses(logits, labels, loss):
    """float64 (N,): the loss of each sample, as the core's training loss computes it
    (the training loss is their mean)."""
    labels = np.asarray(labels, dtype=np.int64)
    if loss == "bce":
        z = np.asarray(logits, dtype=np.float64)[:, 0]
        return np.maximum(z, 0) - z * labels + np.log1p(np.exp(-np.abs(z)))
    return -np.take_along_axis(log_softmax(logits), labels[:, None], axis=1)[:, 0]
