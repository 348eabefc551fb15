"""Helpers shared by the benchmark programs in apps/."""

import json
import os
import platform


def cpu_name():
    """The CPU's model name from /proc/cpuinfo, or what platform knows where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


def write_json(path, results):
    """Write ``results`` to ``path`` as indented JSON, creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
