#!/usr/bin/env bash
# Every test, from a clean checkout: installs heterocnn and its test extras into .venv, then
# runs the C++ unit tests (meson test) on a build with OpenMP and on one without, and the
# pytest suite against the installed package.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test]" meson ninja cython numpy
export PATH="$PWD/.venv/bin:$PATH"

for variant in "build-tests -Dopenmp=enabled" "build-noomp -Dopenmp=disabled"; do
  set -- $variant
  rm -rf "$1"
  meson setup "$1" -Dcuda=disabled "$2" > "$1.setup.log" || { cat "$1.setup.log"; exit 1; }
  meson test -C "$1" --print-errorlogs
done

python -m pytest -q tests
