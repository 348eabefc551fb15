"""Suite tta: time to accuracy with each net's recipe (hc.default_recipe(name)), through
time_to_accuracy.run: test accuracy after every epoch, training time (fit's own timing of the
steps, evaluations excluded) until the target is first reached. At a batch size other than the
recipe's (64; bnnet's 128), the peak learning rate is scaled linearly with the batch (the usual
rule for SGD: 0.05 at 64 -> 0.2 at 256); everything else in the recipe stays. --tta-batches
default: each recipe's own batch size."""

from dataclasses import asdict

import time_to_accuracy


def run(ctx):
    hc, args = ctx.hc, ctx.args
    devices = args.tta_devices or (["cuda"] if ctx.gpu else ["cpu"])
    if "cuda" in devices and not ctx.gpu:
        return {"status": "skipped: --tta-devices asks for cuda but there is no usable GPU"}
    train = hc.datasets.fashion_mnist("train", path=args.data, sample=args.sample)
    test = hc.datasets.fashion_mnist("test", path=args.data, sample=args.sample)
    X, y = train.as_tuple()
    if args.quick:  # a smoke run: one epoch on a slice
        X, y = X[:1024], y[:1024]
    runs = []
    recipes = {}
    for device in devices:
        for name in args.tta_nets:
            recipe = hc.default_recipe(name)
            if args.quick:
                recipe = recipe.with_(epochs=1)
            recipes[name] = asdict(recipe)
            for batch in args.tta_batches or [recipe.batch_size]:
                scaled = recipe.with_(batch_size=batch, lr=recipe.lr * batch / recipe.batch_size)
                ctx.log(f"tta: {name} on {device}, batch {batch}, lr {scaled.lr:g}, "
                        f"{scaled.epochs} epochs of {len(X)} images")
                rec = time_to_accuracy.run(name, (X, y), test.as_tuple(), device, scaled,
                                           scaled.epochs, seed=0, stop_at_target=False,
                                           progress=False)
                rec.update(device=device, batch=batch, lr=scaled.lr)
                runs.append(rec)
    return {"recipes": recipes, "seed": 0, "train_images": len(X),
            "lr_scaling": "peak lr x batch / recipe batch (linear)",
            "data": train.source, "targets": time_to_accuracy.TARGETS,
            "timing": "training time: the sum of fit's per-epoch step time (test evaluations "
                      "excluded); wall: with them. One run per net and device (seed 0): no "
                      "spread over repeats",
            "runs": runs}
