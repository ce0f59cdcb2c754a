# Sourced by tests/test_mpi*.sh: loopback-only mpirun flags, skip without MPI or the programs,
# and a cleanup that kills only the worker processes this test's mpirun started.
B="${TEMPO_BUILD:-build}"
if ! command -v mpirun >/dev/null || [ ! -x "$B/tempo-worker" ] || [ ! -x "$B/tempo" ]; then
  echo "skip: mpirun or $B/tempo-worker missing"; exit 0
fi
MPIRUN=(mpirun --allow-run-as-root --oversubscribe -quiet --mca btl self,tcp --mca btl_tcp_if_include lo
        --mca oob_tcp_if_include lo)
# In sanitizer builds, LeakSanitizer reports ~120 KB that Open MPI's runtime and its dlclose'd
# plugins leave at exit (stacks end in libmpi/libopen-pal/hwloc or unloaded modules), which would
# fail every mpirun. Leak checking of our own master and worker code is done by the in-process
# tests (test_offload*, test_worker, test_shield*), which run the same engine without Open MPI.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
T=$(mktemp -d)
MPIPID=
cleanup() {
  if [ -n "$MPIPID" ]; then
    # tempo-worker, and the test-only tempo-worker-faulty (its process name is cut to 15 characters)
    for p in $(pgrep -P "$MPIPID" -x 'tempo-worker|tempo-worker-fa' 2>/dev/null); do
      kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null
    done
  fi
  rm -rf "$T"
}
trap cleanup EXIT
losses() { grep -o '"loss":[0-9.]*' "$1/metrics.jsonl" | cut -d: -f2; }
fail() { echo "FAIL: $*"; exit 1; }
