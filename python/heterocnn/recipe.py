"""The default training recipe: SGD with momentum and weight decay, a learning rate that warms
up linearly and then follows a cosine down to zero at the last step, and light augmentation
(random 2-pixel shifts and horizontal flips). It is what `heterocnn-train --recipe default`
uses (the CLI's default for convnet) and what apps/time_to_accuracy.py measures.

    recipe = hc.Recipe()                         # or hc.default_recipe("convnet")
    model = hc.models.convnet()
    history = recipe.fit(model, train, epochs=15, val=test)   # makes the SGD, schedule, transform

or by hand (steps = ceil(len(train) / recipe.batch_size)): opt = recipe.optimizer(model);
fit(model, opt, train, epochs, recipe.batch_size, schedule=recipe.schedule(epochs * steps,
steps), transform=recipe.transform()).
"""

import math
from dataclasses import dataclass, replace

from .augment import Augment
from .errors import InvalidValueError


class WarmupCosine:
    """Learning rate at step s (0-based) of ``total_steps``: linear from ``start_factor*peak``
    to ``peak`` over the first ``warmup_steps``, then ``final + (peak - final) * (1 + cos(pi *
    t)) / 2`` with t going from 0 to 1 over the remaining steps. Steps past the end get
    ``final``. A callable for fit(schedule=...)."""

    def __init__(self, peak, total_steps, warmup_steps=0, start_factor=0.1, final=0.0):
        if not peak > 0 or total_steps < 1 or not 0 <= warmup_steps <= total_steps \
                or not 0 <= start_factor <= 1 or not 0 <= final <= peak:
            raise InvalidValueError(
                f"WarmupCosine needs peak > 0, total_steps >= 1, 0 <= warmup_steps <= "
                f"total_steps, 0 <= start_factor <= 1 and 0 <= final <= peak; got peak={peak}, "
                f"total_steps={total_steps}, warmup_steps={warmup_steps}, "
                f"start_factor={start_factor}, final={final}")
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), \
            int(warmup_steps)
        self.start_factor, self.final = float(start_factor), float(final)

    def __call__(self, step):
        if step < self.warmup_steps:
            f = self.start_factor + (1 - self.start_factor) * step / self.warmup_steps
            return self.peak * f
        rest = self.total_steps - self.warmup_steps
        if step >= self.total_steps or rest <= 1:
            return self.final if step >= self.total_steps else self.peak
        t = (step - self.warmup_steps) / (rest - 1)
        return self.final + (self.peak - self.final) * 0.5 * (1 + math.cos(math.pi * t))

    def __repr__(self):
        return (f"WarmupCosine(peak={self.peak}, total_steps={self.total_steps}, "
                f"warmup_steps={self.warmup_steps})")


@dataclass(frozen=True)
class Recipe:
    """Hyperparameters of a training run. ``lr`` is the peak of the schedule; ``warmup_epochs``
    may be fractional; ``crop_padding=0`` and ``flip=0`` turn augmentation off.
    ``optimizer_kind``: "sgd" (with ``momentum``, ``nesterov``), "adam" or "adamw" (their
    default betas and eps), each with ``weight_decay`` (Adam's L2, AdamW's decoupled decay).
    ``label_smoothing``: the cross-entropy's, for the model the recipe is used with (the CLI
    builds it so; a model keeps the loss it was made with)."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    epochs: int = 15
    warmup_epochs: float = 1.0
    crop_padding: int = 2
    flip: float = 0.5
    optimizer_kind: str = "sgd"
    nesterov: bool = False
    label_smoothing: float = 0.0

    def __post_init__(self):
        from .optim import OPTIMIZERS

        if self.optimizer_kind not in OPTIMIZERS:
            raise InvalidValueError(f"Recipe optimizer_kind must be one of {sorted(OPTIMIZERS)}, "
                                    f"got {self.optimizer_kind!r:.100}")
        if self.nesterov and self.optimizer_kind != "sgd":
            raise InvalidValueError(f"Recipe nesterov=True is for optimizer_kind 'sgd', not "
                                    f"{self.optimizer_kind!r}")
        if isinstance(self.label_smoothing, bool) or not isinstance(self.label_smoothing,
                                                                    (int, float)) \
                or not 0 <= self.label_smoothing <= 1:
            raise InvalidValueError(f"Recipe label_smoothing must be a number in [0, 1], got "
                                    f"{self.label_smoothing!r:.100}")

    def optimizer(self, model):
        """The recipe's optimizer for ``model`` (its lr is the schedule's peak)."""
        from .optim import make_optimizer

        return make_optimizer(self.optimizer_kind, model, self.lr, self.momentum,
                              self.weight_decay, self.nesterov)

    def schedule(self, total_steps, steps_per_epoch=None):
        """The per-step learning rate over ``total_steps`` (warm-up of ``warmup_epochs`` of
        ``steps_per_epoch`` steps; without it, of no steps)."""
        warm = 0 if steps_per_epoch is None else round(self.warmup_epochs * steps_per_epoch)
        return WarmupCosine(self.lr, total_steps, min(warm, total_steps))

    def transform(self):
        """The augmentation for fit(transform=...), or None when it is off."""
        if not self.crop_padding and not self.flip:
            return None
        return Augment(self.crop_padding, self.flip)

    def with_(self, **changes):
        """A copy with some fields changed (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def fit(self, model, train, epochs=None, val=None, opt=None, **fit_kwargs):
        """hc.fit with this recipe: makes the optimizer (unless ``opt`` is given), the
        schedule over ``epochs`` (default: the recipe's) and the augmentation. Returns fit's
        history."""
        from .data_checks import as_arrays
        from .training import fit

        if getattr(model, "label_smoothing", 0.0) != self.label_smoothing:
            raise InvalidValueError(
                f"the recipe's label_smoothing is {self.label_smoothing}, the model's "
                f"{model.label_smoothing}: build the model with label_smoothing="
                f"{self.label_smoothing} (a model keeps the loss it was made with)")
        epochs = self.epochs if epochs is None else epochs
        n = len(as_arrays(train, "train")[0])
        steps = -(-n // self.batch_size)
        opt = self.optimizer(model) if opt is None else opt
        return fit(model, opt, train, epochs, self.batch_size, val=val,
                   schedule=self.schedule(epochs * steps, steps), transform=self.transform(),
                   **fit_kwargs)


RECIPES = {
    "default": Recipe(),
    # hc.models.bnnet's: the recipe tools/bnnet_torch_search.py found to reach 94.5% within 20
    # epochs (benchmarks/bnnet-search-h200.json)
    "bnnet": Recipe(lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, epochs=20,
                    nesterov=True, label_smoothing=0.1),
}


def default_recipe(model_name=None):
    """The recipe of ``model_name`` (a name of hc.models): bnnet's own, else the default."""
    return RECIPES.get(model_name, RECIPES["default"])
