#!/usr/bin/env bash
# test_make_default.sh - `make` with no target builds everything (build/tempo among it), also
# when an optional feature adds rules before `all:` (the CUDA block once made
# build/tests/test_cuda the default goal). Dry runs only (make -n -B): nothing is built.
# CUDA_FOUND on the command line pretends CUDA was found, so the check holds on any machine.
set -u
cd "$(dirname "$0")/.."
CHECK_NAME=make-default
. tests/check_common.sh
export TEMPO_SKIP_SETUP=1
unset MAKEFLAGS MFLAGS
check "make -n (no target) runs" 0 make -n -B O=build
grep_in "make with no target links build/tempo" "$tmp/out" "-o build/tempo "
grep_in "make with no target builds the shared library" "$tmp/out" "-o build/libtempo.so."
check "make -n (no target, CUDA found) runs" 0 make -n -B O=build CUDA_FOUND="/usr/bin/true /nonexistent-cuda-lib"
grep_in "with CUDA found, make with no target still links build/tempo" "$tmp/out" "-o build/tempo "
grep_in "with CUDA found, the CUDA test is built too" "$tmp/out" "-o build/tests/test_cuda "
finish
