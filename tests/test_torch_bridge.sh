#!/usr/bin/env bash
# test_torch_bridge.sh - the PyTorch bridge (python/tempo_torch over build/libtempo.so) with
# Debian's /usr/bin/python3 and its python3-torch: tests/test_torch_bridge.py (resnet20's 20
# steps against PyTorch, the engine's product count, a cheating worker, layer variants,
# attention, the step boundary). Prints a SKIP line and passes where /usr/bin/python3 has no
# torch (scripts/setup-deps.sh installs python3-torch) or the build is a sanitizer build (its
# libtempo.so needs the sanitizer runtime preloaded into Python).
set -u
cd "$(dirname "$0")/.."
B="${TEMPO_BUILD:-build}"
PY=/usr/bin/python3
if ! [ -x "$PY" ] || ! "$PY" -c "import torch" 2>/dev/null; then
  echo "SKIP: $PY has no torch (apt-get install python3-torch, or scripts/setup-deps.sh); the bridge is not tested"
  exit 0
fi
case "$B" in *san*)
  echo "SKIP: $B is a sanitizer build; its libtempo.so cannot be loaded into Python without the sanitizer runtime"
  exit 0 ;;
esac
lib=$(ls "$B"/libtempo.so.*.*.* 2>/dev/null | head -n 1)
if [ -z "$lib" ]; then
  echo "not ok - no $B/libtempo.so.*: build it first (make)"
  exit 1
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONDONTWRITEBYTECODE=1
PYTHONPATH="$PWD/python" TEMPO_LIB="$lib" timeout 300 "$PY" tests/test_torch_bridge.py
