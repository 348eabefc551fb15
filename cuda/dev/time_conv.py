"""Convolution timing on the GPU machine (after tools/gpu_run.sh has installed heterocnn):
  1. convnet training images/s through the whole engine, data held on the device (the step
     captured as a CUDA graph), batch 64 and 256, median of 3 repeats;
  2. per-layer forward/backward microseconds of that convnet from the engine's profile;
  3. each of convnet's conv layers alone at batch 256, forward + backward (dx, except for the
     first layer), against torch.nn.Conv2d on cuDNN (fp32, TF32 off), CUDA events.
Prints a table; --json writes every figure. --rates-only: part 1 alone, for A/B runs of two
builds (e.g. PYTHONPATH=/tmp/base-site python3 cuda/dev/time_conv.py --rates-only)."""
import argparse
import json
import statistics
import time

import numpy as np
import torch

import heterocnn as hc

CONVS = ((1, 32, 28, False), (32, 32, 28, True), (32, 64, 14, True), (64, 64, 14, True))


def sync():
    torch.cuda.synchronize()


def convnet_rate(data, batch, steps, repeats, profile=True):
    model = hc.models.convnet(seed=0).to("cuda")
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    idx = np.random.default_rng(0).integers(0, len(data), (steps, batch)).astype(np.int64)
    for i in range(20):
        model.train_step_on(data, idx[i], opt)
    rates = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        for i in range(steps):
            model.train_step_on(data, idx[i], opt)
        sync()
        rates.append(steps * batch / (time.perf_counter() - t))
    if not profile:
        return statistics.median(rates), rates, []
    model.profile(True)
    for i in range(50):
        model.train_step_on(data, idx[i], opt)
    sync()
    layers = [{"layer": t["layer"], "fwd_us": 1e6 * t["forward_s"], "bwd_us": 1e6 * t["backward_s"]}
              for t in model.layer_times()]
    model.profile(False)
    return statistics.median(rates), rates, layers


def torch_conv_us(cin, cout, size, with_dx, batch=256, steps=50):
    torch.backends.cudnn.benchmark = True
    conv = torch.nn.Conv2d(cin, cout, 3, padding=1).cuda()
    x = torch.randn(batch, cin, size, size, device="cuda", requires_grad=with_dx)
    dy = torch.randn(batch, cout, size, size, device="cuda")

    def step():
        conv.zero_grad(set_to_none=True)
        if x.grad is not None:
            x.grad = None
        conv(x).backward(dy)

    for _ in range(10):
        step()
    out = []
    for _ in range(3):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(steps):
            step()
        b.record()
        sync()
        out.append(1e3 * a.elapsed_time(b) / steps)
    return statistics.median(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--rates-only", action="store_true")
    args = p.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (20000, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 20000).astype(np.int64)
    data = hc.DeviceDataset((X, y), "cuda")
    res = {"gpu": torch.cuda.get_device_name(), "convnet": {}, "layers_vs_cudnn": []}
    for batch in (64, 256):
        rate, rates, layers = convnet_rate(data, batch, 300 if batch == 64 else 150, 3,
                                           not args.rates_only)
        res["convnet"][batch] = {"img_s": rate, "repeats": rates, "layers": layers}
    for cin, cout, size, with_dx in () if args.rates_only else CONVS:
        res["layers_vs_cudnn"].append({"layer": f"conv {cin}->{cout} {size}x{size}",
                                       "dx": with_dx,
                                       "cudnn_us": torch_conv_us(cin, cout, size, with_dx)})
    print(res["gpu"])
    for batch, r in res["convnet"].items():
        print(f"convnet batch {batch}: {r['img_s']:,.0f} img/s "
              f"({', '.join(f'{v:,.0f}' for v in r['repeats'])})")
        for t in r["layers"]:
            print(f"   {t['layer'][:44]:<44} fwd {t['fwd_us']:8.1f} us  bwd {t['bwd_us']:8.1f} us")
    for t in res["layers_vs_cudnn"]:
        print(f"cuDNN {t['layer']} fwd+bwd{' (dx)' if t['dx'] else ''}: {t['cudnn_us']:.1f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
