"""How well a model does on a data set: mean loss and accuracy in one pass, the confusion
matrix and the accuracy of each class, with the class names."""

import numpy as np

from .data_checks import as_arrays, check_label_range
from .outputs import predicted_labels, sample_losses
from .training import predict


def _checked(model, data, what="data"):
    X, y = as_arrays(data, what)
    check_label_range(model, X.shape[1:], int(y.min()), int(y.max()), what)
    return X, y


def loss_and_accuracy(model, data, batch_size=1000):
    """(mean loss, accuracy) of ``model`` on ``data`` ((X, y) or a Dataset): the loss the
    training step minimises (softmax cross-entropy or sigmoid BCE, mean over the samples),
    from one forward pass in batches of ``batch_size``."""
    X, y = _checked(model, data)
    logits = predict(model, X, batch_size)
    return (float(sample_losses(logits, y, model.loss).mean()),
            float((predicted_labels(logits, model.loss) == y).mean()))


def class_names(model, data):
    """The class names of ``data`` (a Dataset's), else "0", "1", ... for the model's outputs."""
    classes = getattr(data, "classes", None)
    if classes is not None:
        return tuple(classes)
    if model.loss == "bce":
        return ("0", "1")
    outputs = model.output_shape((1,) + as_arrays(data, "data")[0].shape[1:])[1]
    return tuple(str(c) for c in range(outputs))


def confusion_matrix(model, data, batch_size=1000):
    """int64 (K, K): entry [i, j] counts the samples of class i that ``model`` puts in class j
    (rows: true class, columns: predicted, as scikit-learn's); K = the number of classes
    (2 for bce)."""
    X, y = _checked(model, data)
    k = len(class_names(model, data))
    pred = predicted_labels(predict(model, X, batch_size), model.loss)
    return np.bincount(y * k + pred, minlength=k * k).reshape(k, k)


def per_class_accuracy(cm, classes=None):
    """{class name: the share of its samples predicted right} from a confusion matrix (None
    for a class without samples); names "0", "1", ... when ``classes`` is None."""
    cm = np.asarray(cm)
    classes = classes or [str(c) for c in range(len(cm))]
    totals = cm.sum(axis=1)
    return {name: (float(cm[i, i] / totals[i]) if totals[i] else None)
            for i, name in enumerate(classes)}


def format_confusion(cm, classes):
    """The confusion matrix as text: a row per true class with its counts per predicted class
    (columns numbered as the rows) and its accuracy."""
    cm = np.asarray(cm)
    acc = per_class_accuracy(cm, classes)
    name_w = max(len(c) for c in classes) + 5
    cell = max(4, len(str(cm.max())) + 1)
    head = "true \\ predicted".ljust(name_w) + "".join(f"{j:>{cell}}" for j in range(len(cm)))
    lines = [head + "  accuracy"]
    for i, name in enumerate(classes):
        a = "-" if acc[name] is None else f"{acc[name]:.3f}"
        lines.append(f"{i:>2} {name}".ljust(name_w) + "".join(f"{v:>{cell}}" for v in cm[i])
                     + f"  {a:>8}")
    total = cm.trace() / max(cm.sum(), 1)
    lines.append(f"overall accuracy {total:.4f} ({cm.trace()} of {cm.sum()})")
    return "\n".join(lines)
