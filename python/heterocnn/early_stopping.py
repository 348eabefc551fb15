"""Early stopping: stop training when a monitored figure of the history stops improving."""

import numpy as np

from .errors import InvalidValueError

MONITORS = {"val_loss": "min", "loss": "min", "val_accuracy": "max", "accuracy": "max"}


class EarlyStopping:
    """``fit(..., early_stopping=hc.EarlyStopping(patience=3))`` stops after ``patience``
    epochs in a row in which ``monitor`` ("val_loss", "val_accuracy", "loss" or "accuracy")
    did not improve on its best by more than ``min_delta`` (lower is better for losses,
    higher for accuracies). With ``restore_best`` the model ends with the weights of its best
    epoch, whether training stopped early or ran to the end.

    After fit: ``best_epoch`` (0-based), ``best`` (its value), ``stopped_epoch`` (the epoch
    after which training stopped, or None). One object serves one fit at a time; fit
    resets it at the start."""

    def __init__(self, patience=3, min_delta=0.0, monitor="val_loss", restore_best=True):
        if (isinstance(patience, bool) or not isinstance(patience, (int, np.integer))
                or patience < 1):
            raise InvalidValueError(f"patience must be a positive integer, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not min_delta >= 0:
            raise InvalidValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if monitor not in MONITORS:
            raise InvalidValueError(f"monitor must be one of {sorted(MONITORS)}, got {monitor!r}")
        self.patience, self.min_delta = int(patience), float(min_delta)
        self.monitor, self.restore_best = monitor, bool(restore_best)
        self.reset()

    def reset(self):
        self.best = self.best_epoch = self.stopped_epoch = None
        self._best_state = None
        self._waited = 0

    def check(self, has_val):
        """Raise InvalidValueError, before training, when the figure will not exist."""
        if self.monitor.startswith("val_") and not has_val:
            raise InvalidValueError(f"early stopping monitors {self.monitor!r}, which needs "
                                    "fit(..., val=...)")

    def _improved(self, value):
        if self.best is None:
            return True
        if MONITORS[self.monitor] == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch, history, model):
        """Called by fit after each epoch; True when training should stop."""
        value = history[self.monitor][-1]
        if value is None:  # an epoch whose steps were all skipped: no figure, no progress
            self._waited += 1
        elif self._improved(value):
            self.best, self.best_epoch, self._waited = value, epoch, 0
            if self.restore_best:
                self._best_state = model.state_dict()
        else:
            self._waited += 1
        if self._waited >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def finish(self, model, last_epoch):
        """At the end of fit: put the best epoch's weights back (restore_best). True when the
        model's weights changed."""
        if self._best_state is None or self.best_epoch == last_epoch:
            return False
        model.load_state_dict(self._best_state)
        return True

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, restore_best={self.restore_best})")
