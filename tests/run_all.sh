#!/usr/bin/env bash
# Every test, from a clean checkout: installs heterocnn and its test extras into .venv, then
# runs the C++ unit tests (meson test) on a build with OpenMP and on one without, and the
# pytest suite against the installed package; then both again on a build with AddressSanitizer
# and UndefinedBehaviorSanitizer (build-asan, installed into .venv-asan).
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

# Sanitizers: the core, the C++ tests and the Python extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer (one build, build-asan, installed into .venv-asan), then the C++
# tests and the pytest suite (CPU path) run on it. Any report stops the process with a failing
# exit code. Python is not built with ASan, so gcc's libasan is preloaded (with libstdc++, whose
# __cxa_throw ASan must find at start-up); CPython's deliberate leaks are not reported.
# --capture=sys leaves stderr to the sanitizers' reports.
rm -rf build-asan
python3 -m venv .venv-asan
.venv-asan/bin/python -m pip install -q --upgrade pip
.venv-asan/bin/python -m pip install -q meson-python meson ninja cython numpy
.venv-asan/bin/python -m pip install -q --no-build-isolation -C build-dir=build-asan \
  -C setup-args=-Db_sanitize=address,undefined -C setup-args=-Db_lundef=false \
  -C setup-args=-Dbuildtype=debugoptimized -C setup-args=-Dcuda=disabled ".[test]"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ASAN_OPTIONS=detect_leaks=1 .venv-asan/bin/meson test -C build-asan --print-errorlogs
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS=detect_leaks=0 \
  .venv-asan/bin/python -m pytest -q -p no:cacheprovider --capture=sys tests
