#!/usr/bin/env bash
# Installs the Debian packages Tempo needs, only when some are missing.
# Idempotent and quiet when everything is present. Set TEMPO_SKIP_SETUP=1 to skip.
set -euo pipefail
[ "${TEMPO_SKIP_SETUP:-0}" = 1 ] && exit 0

# Required to build, test and run the main job.
required=(build-essential pkg-config libopenblas-dev libdnnl-dev libsodium-dev zlib1g-dev libcmocka-dev
          dataset-fashion-mnist libopenmpi-dev openmpi-bin clang libclang-rt-14-dev procps python3
          iproute2 python3-torch)
# python3-torch (Debian's PyTorch 1.13 for /usr/bin/python3, about 140 MB to download, 580 MB
# installed) is required so that tests/test_torch_bridge.sh (the PyTorch bridge, python/) really runs
# in CI; that test skips with a message where it is missing (TEMPO_SKIP_SETUP=1 builds).
# Optional extras: jemalloc (fair PyTorch baseline in benchmarks).
optional=(libjemalloc2)

want=("${required[@]}")
[ "${TEMPO_SETUP_OPTIONAL:-0}" = 1 ] && want+=("${optional[@]}")

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: not root and no sudo; install these packages: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2
