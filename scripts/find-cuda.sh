#!/bin/sh
# Prints "NVCC LIBDIR" for a CUDA toolkit that can both compile (nvcc) and link (libcublas and
# libcudart in LIBDIR); prints nothing when there is none. nvcc may be a wrapper script (as
# /usr/local/bin/nvcc is on some machines), so the toolkit root comes from nvcc's own --dryrun
# report (TOP=...), then from nvcc's real path, then from $CUDA_HOME and /usr/local/cuda.
nvcc=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
[ -n "$nvcc" ] || exit 0
top=$("$nvcc" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
real=$(readlink -f "$nvcc" 2>/dev/null)
for root in ${CUDA_HOME:-} $top ${real%/bin/nvcc} /usr/local/cuda; do
  for dir in "$root/lib64" "$root/targets/x86_64-linux/lib" "$root/lib"; do
    if [ -e "$dir/libcublas.so" ] && [ -e "$dir/libcudart.so" ]; then
      echo "$nvcc $(readlink -f "$dir")"
      exit 0
    fi
  done
done
