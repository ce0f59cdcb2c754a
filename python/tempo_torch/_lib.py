"""_lib.py - loads libtempo.so with ctypes and declares the flat bridge API (include/tempo/bridge.h).

Only plain ints, a uint64, strings and float pointers cross this boundary: no Tempo struct is
laid out on the Python side. The library is looked up in this order:
  1. the path given to load() (tempo_torch.Engine(lib=...)),
  2. the environment variable TEMPO_LIB,
  3. the build folder of the repository this package lives in (build/libtempo.so.*),
  4. the system's libtempo.so.0 (make install).
With mpi=True it is build/libtempo_mpi.so instead (libtempo with the MPI transport's master
side; TEMPO_LIB_MPI names another), after Open MPI's libmpi is made global for its plugins.
"""

import ctypes
import ctypes.util
import glob
import os
import threading

ABI = 1  # TEMPO_BRIDGE_ABI of the C side this package was written for

_c_float_p = ctypes.POINTER(ctypes.c_float)
_loaded = {}
_lock = threading.Lock()


def _candidates(path, mpi):
    env = "TEMPO_LIB_MPI" if mpi else "TEMPO_LIB"
    if path:
        return [path]
    if os.environ.get(env):
        return [os.environ[env]]
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    if mpi:
        return [os.path.join(repo, "build", "libtempo_mpi.so")]
    found = sorted(glob.glob(os.path.join(repo, "build", "libtempo.so.*.*.*")))
    sys_lib = ctypes.util.find_library("tempo")
    return found + ([sys_lib] if sys_lib else []) + ["libtempo.so.0"]


def _declare(lib):
    vp, i, u64, cp, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t
    sigs = {
        "tempo_bridge_abi": (i, []),
        "tempo_bridge_create": (i, [cp, i, i, i, u64, cp, ctypes.POINTER(vp)]),
        "tempo_bridge_free": (None, [vp]),
        "tempo_bridge_forward": (i, [vp, i, ctypes.c_uint, i, i, i, i, i, vp, vp, vp]),
        "tempo_bridge_backward": (i, [vp, i, i, i, i, i, vp, vp, vp, vp, vp]),
        "tempo_bridge_step_end": (None, [vp]),
        "tempo_bridge_stats_json": (i, [vp, i, ctypes.c_char_p, sz, ctypes.POINTER(sz)]),
        "tempo_bridge_live_workers": (i, [vp]),
        "tempo_bridge_site_kind": (ctypes.c_uint, [cp]),
        "tempo_bridge_errmsg": (cp, []),
        "tempo_bridge_test_set_fault": (i, [vp, i, i, i, i]),
        "tempo_bridge_test_faults": (u64, [vp, i]),
        "tempo_status_str": (cp, [i]),
    }
    if hasattr(lib, "tempo_bridge_create_mpi"):
        sigs["tempo_bridge_create_mpi"] = (i, [cp, i, i, u64, cp, ctypes.POINTER(i), ctypes.POINTER(vp)])
        sigs["tempo_bridge_mpi_finalize"] = (None, [])
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args


def load(path=None, mpi=False):
    """The loaded library (cached per path). Raises OSError naming every place tried."""
    with _lock:
        key = (path or "<default>", mpi)
        if key in _loaded:
            return _loaded[key]
        tried = []
        if mpi:
            for name in ("libmpi.so.40", ctypes.util.find_library("mpi")):
                try:
                    ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)  # Open MPI's plugins look for its symbols
                    break
                except (OSError, TypeError):
                    continue
        for cand in _candidates(path, mpi):
            try:
                lib = ctypes.CDLL(cand)
            except OSError as e:
                tried.append(f"{cand}: {e}")
                continue
            if not hasattr(lib, "tempo_bridge_abi"):
                tried.append(f"{cand}: has no tempo_bridge_* entry points (an older libtempo?)")
                continue
            _declare(lib)
            if lib.tempo_bridge_abi() != ABI:
                tried.append(f"{cand}: bridge ABI {lib.tempo_bridge_abi()}, this package needs {ABI}")
                continue
            _loaded[key] = lib
            return lib
        what = "libtempo_mpi.so (built by `make` where mpicc exists; or set TEMPO_LIB_MPI)" if mpi else \
            "libtempo (build it with `make`, or set TEMPO_LIB)"
        raise OSError(f"tempo_torch: cannot load {what}:\n  " + "\n  ".join(tried))
