#!/usr/bin/env python3
"""Train a network on Fashion-MNIST and print its test accuracy (heterocnn's main job).
The same program is installed as `heterocnn-train` and `python -m heterocnn`; see --help."""

import sys

from heterocnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
