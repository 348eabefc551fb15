#!/usr/bin/env python3
"""The tables of core/CPU_PERF.md entry 25 from this folder's device outputs:
python3 summarize.py call-2 (each conv pass of bnnet per variant, least and most of the rounds)
python3 summarize.py call-4 (every pass at 8 and 16 threads, best of the rounds; those slower at 16)."""
import collections
import glob
import os
import re
import sys

PASS = re.compile(r"(\S+) (.*?)\s+fwd\s+([\d.]+) us.*bwd\s+([\d.]+) us")
DWDX = re.compile(r"\s+dw\s+([\d.]+) us.*dx\s+([\d.]+) us")


def parse(path):
    out, net, layer = {}, None, None
    for line in open(path):
        s = line.rstrip("\n")
        if s.strip() in ("mlp", "lenet5", "convnet", "bnnet"):
            net = s.strip()
            continue
        m = PASS.match(s.strip())
        if m and net:
            layer = m.group(1)
            out[(net, layer, "fwd")] = float(m.group(3))
            out[(net, layer, "bwd")] = float(m.group(4))
            continue
        m = DWDX.match(s)
        if m and layer:
            out[(net, layer, "dw")] = float(m.group(1))
            out[(net, layer, "dx")] = float(m.group(2))
    return out


def collect(folder, pattern, key_of):
    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    for path in glob.glob(os.path.join(folder, pattern)):
        for k, v in parse(path).items():
            runs[key_of(os.path.basename(path))][k].append(v)
    return runs


def call2(folder):
    runs = collect(folder, "tl-*.txt", lambda f: f[3:-4].rsplit("-r", 1)[0])
    for batch in ("b256", "b64"):
        tags = sorted(t for t in runs if t.endswith(batch))
        print(batch, "| " + " | ".join(t[: -len(batch) - 1] for t in tags))
        for layer in ("conv1", "conv3", "conv4", "conv5", "conv6"):
            for p in ("fwd", "dw", "dx"):
                k = ("bnnet", layer, p)
                cells = [f"{min(runs[t][k]):.0f}-{max(runs[t][k]):.0f}" for t in tags]
                print(f"{layer} {p}", "| " + " | ".join(cells))


def call4(folder):
    runs = collect(folder, "tl-*.txt", lambda f: f[3:-4].rsplit("-r", 1)[0])
    for batch in ("64", "256"):
        best = {t: {k: min(v) for k, v in runs[f"b{batch}-{t}t"].items()} for t in (8, 16)}
        slower = [k for k in sorted(best[8]) if best[16][k] > best[8][k]]
        print(f"batch {batch}: {len(best[8])} passes, {len(slower)} slower at 16 threads")
        for k in slower:
            print(f"  {k[0]} {k[1]} {k[2]}: {best[8][k]:.1f} -> {best[16][k]:.1f} us")


if __name__ == "__main__":
    folder = sys.argv[1]
    call2(folder) if folder.rstrip("/").endswith("call-2") else call4(folder)
