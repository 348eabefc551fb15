"""The history fit returns, as a CSV file and as loss and accuracy curves in a PNG (matplotlib,
the extra ``heterocnn[plot]``)."""

import csv
import io

from .atomic import write_atomic
from .extras import require

COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "images_per_s",
           "skipped_steps")


def write_history_csv(history, path):
    """Write ``history`` to ``path`` as CSV: a header (COLUMNS, then any other per-epoch keys)
    and one row per epoch (epoch counted from 1; empty where a value is None). Rewritten
    whole (atomically: hc.atomic.write_atomic) each call, so calling it after every epoch keeps
    a killed run's epochs."""
    epochs = len(history.get("loss", []))
    keys = [k for k in COLUMNS[1:] if k in history]
    keys += [k for k in history if k not in keys and isinstance(history[k], list)
             and len(history[k]) == epochs]
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["epoch"] + keys)
    for e in range(epochs):
        w.writerow([e + 1] + ["" if history[k][e] is None else history[k][e] for k in keys])
    return write_atomic(path, text.getvalue().encode())


def read_history_csv(path):
    """The history a CSV from write_history_csv holds: {column: [float or None per epoch]}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    return {k: [float(r[k]) if r[k] != "" else None for r in rows] for k in keys}


def plot_history(history, path, size=(9.0, 3.5), dpi=100):
    """Draw the loss (training and validation) and the accuracy curves of ``history`` per
    epoch, side by side, into the PNG ``path`` of size[0] * dpi x size[1] * dpi pixels
    (written atomically).
    Needs matplotlib: MissingExtraError naming ``heterocnn[plot]`` without it."""
    require("matplotlib", "plot", "plot_history")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    epochs = range(1, len(history.get("loss", [])) + 1)
    for ax, what in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for key, label in ((what, "training"), (f"val_{what}", "validation")):
            values = history.get(key) or []
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend()
    fig.tight_layout()
    return write_atomic(path, lambda f: fig.savefig(f, dpi=dpi, format="png"))
