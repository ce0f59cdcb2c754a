"""engine.py - one Tempo engine (blinding, workers, Freivalds checks) and the step boundary.

The engine keeps, for every training forward product, its keys and (on the workers) its blinded
operands until step_end(); the operands X and W of such a product must stay unchanged until then.
Engine hands out one product site per training forward call of a step (so a module called twice
in a step, or gradient accumulation over several micro-batches, gets two sites), remembers the
operands' version counters, and refuses what would make a gradient silently wrong:
  * a training forward, backward or step_end() after an operand of a pending product changed in
    place (typically optimizer.step() run before step_end()): StepError;
  * a backward after the step of its forward ended: StepError;
  * more than max_pending training forwards without step_end(): StepError.
"""

import atexit
import ctypes
import json

from . import _lib


class TempoError(RuntimeError):
    """An error reported by libtempo (bad argument, worker failure, ...), with its status code."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class StepError(TempoError):
    """A misuse of the step boundary that would otherwise give a silently wrong gradient."""

    def __init__(self, message):
        super().__init__(-1, message)


INFERENCE_SITE = 0  # inference products keep no state: they all share one site

FAULT_KINDS = {"none": 0, "wrong_element": 1, "scale": 2, "stale": 3, "zero": 4, "other_task": 5,
               "error_reply": 6, "no_reply": 7}  # worker_fault.h, tempo_fault_kind


class Engine:
    """Tempo's matrix-product engine with in-process workers.

    mode: "tempo" (blinded and verified, default), "plain" (workers, unblinded), "shield"
    (blinded and masked, workers >= 4) or "local" (the master computes). workers: in-process
    worker threads. verify_rounds: Freivalds vectors per result (0 turns the checks off).
    threads: the master's threads. seed: the key stream's seed (0 = fresh randomness).
    protect: the protection policy (docs/obfuscation.md): "none", "ends" (the products of the
    raw input's layer and of the head, forward and backward, are computed by the master),
    "spatial" (also every convolution whose windows overlap is blinded with mixing blocks),
    "all" (every other product mixed), or None for the mode's default ("spatial" in tempo
    mode, "none" otherwise). offload() declares which layers are which.
    lib: path of libtempo.so (default: TEMPO_LIB, then the repository's build folder).
    max_pending: training forwards allowed between two step_end() calls.
    transport: "inproc" (worker threads in this process) or "mpi": this process is rank 0 of
    `mpirun -np 1 /usr/bin/python3 SCRIPT : -np N build/tempo-worker --backend cpu` and the N
    tempo-worker ranks are the workers (`workers` is not used; build/libtempo_mpi.so; one such
    engine per process, as MPI starts once).
    """

    def __init__(self, mode="tempo", workers=2, verify_rounds=1, threads=1, seed=0, protect=None, lib=None,
                 max_pending=16384, transport="inproc"):
        if transport not in ("inproc", "mpi"):
            raise ValueError(f"tempo_torch: transport is 'inproc' or 'mpi', not {transport!r}")
        self._b = None
        self._mpi = transport == "mpi"
        self._lib = _lib.load(lib, mpi=self._mpi)
        handle = ctypes.c_void_p()
        args = (str(mode).encode(), int(verify_rounds), int(threads), int(seed) & 0xFFFFFFFFFFFFFFFF,
                None if protect is None else str(protect).encode())
        if self._mpi:
            n = ctypes.c_int(0)
            self._check(self._lib.tempo_bridge_create_mpi(*args, ctypes.byref(n), ctypes.byref(handle)))
            workers = n.value
        else:
            self._check(self._lib.tempo_bridge_create(args[0], int(workers), *args[1:], ctypes.byref(handle)))
        self._b = handle
        if self._mpi:  # the workers get SHUTDOWN and MPI ends at exit even without close()
            atexit.register(self.close)
        self.kinds = {k: self._lib.tempo_bridge_site_kind(k.encode()) for k in ("raw_input", "head", "spatial")}
        self.mode = str(mode)
        self.workers = int(workers)
        self.max_pending = int(max_pending)
        self.generation = 0  # steps ended so far
        self._pending = []  # (site, [(tensor, version)], where) of this step's training forwards

    # ---- lifetime
    def close(self):
        """Frees the engine (its workers stop; MPI workers are shut down and MPI ends). Further use
        raises TempoError."""
        if self._b:
            self._lib.tempo_bridge_free(self._b)
            self._b = None
            if self._mpi:
                self._lib.tempo_bridge_mpi_finalize()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __deepcopy__(self, memo):
        return self  # a deep-copied model shares its engine (the engine holds no model state)

    def __reduce__(self):
        raise TypeError("a tempo_torch.Engine cannot be pickled: save model.state_dict() instead")

    # ---- errors
    def _check(self, st):
        if st != 0:
            msg = self._lib.tempo_bridge_errmsg().decode(errors="replace")
            name = self._lib.tempo_status_str(st).decode(errors="replace")
            raise TempoError(st, f"tempo: {msg or name}")

    def _handle(self):
        if not self._b:
            raise TempoError(-1, "tempo: the engine was closed")
        return self._b

    # ---- the step boundary
    def _check_pending(self, when):
        for site, ops, where in self._pending:
            for t, v in ops:
                if t._version != v:
                    raise StepError(
                        f"tempo: an operand of {where} (product site {site}) changed in place before step_end() "
                        f"(seen at {when}); the engine still holds that product's keys and blinded operands. "
                        "Call engine.step_end() before optimizer.step() (tempo_torch.wrap_optimizer does it), "
                        "and do not modify weights or inputs between a forward and step_end().")

    def training_site(self, operands, where):
        """A fresh site for a training forward whose operands are `operands` (tensors whose
        in-place changes until step_end() are refused); `where` names it in errors."""
        self._check_pending(f"the forward of {where}")
        if len(self._pending) >= self.max_pending:
            raise StepError(f"tempo: {len(self._pending)} training forwards without step_end(): call "
                            "engine.step_end() once per optimizer step (tempo_torch.wrap_optimizer), and run "
                            "evaluation under torch.no_grad()")
        site = len(self._pending) + 1
        self._pending.append((site, [(t, t._version) for t in operands], where))
        return site

    def check_backward(self, site, generation, where):
        """Raises StepError when the product's step has ended or its operands changed."""
        if generation != self.generation:
            raise StepError(f"tempo: backward of {where} after step_end() ended its step: call loss.backward() "
                            "before step_end() / optimizer.step()")
        self._check_pending(f"the backward of {where}")

    def step_end(self):
        """Ends the training step: the engine wipes the step's keys and the workers release its
        operands. Call it after loss.backward() and before optimizer.step() (or wrap the
        optimizer with tempo_torch.wrap_optimizer). Raises StepError, and still ends the step,
        when a pending product's operand changed before it."""
        b = self._handle()
        try:
            self._check_pending("step_end()")
        finally:
            self._pending = []
            self.generation += 1
            self._lib.tempo_bridge_step_end(b)

    @property
    def pending(self):
        """Training forward products of the current step (not yet ended by step_end())."""
        return len(self._pending)

    # ---- products (float32, contiguous, CPU; checked by the caller, ops.py)
    def forward(self, site, kind, training, X, W, Y):
        b_, m, n = X.shape
        p = W.shape[1]
        self._check(self._lib.tempo_bridge_forward(self._handle(), site, kind, b_, m, n, p, 1 if training else 0,
                                                   X.data_ptr(), W.data_ptr(), Y.data_ptr()))

    def site_kind(self, *names):
        """The TEMPO_SITE_* flags of the named kinds ("raw_input", "head", "spatial")."""
        k = 0
        for n in names:
            k |= self.kinds[n]
        return k

    def backward(self, site, X, W, dY, dX, dW):
        b_, m, n = X.shape
        p = W.shape[1]
        self._check(self._lib.tempo_bridge_backward(self._handle(), site, b_, m, n, p, X.data_ptr(), W.data_ptr(),
                                                    dY.data_ptr(), dX.data_ptr() if dX is not None else None,
                                                    dW.data_ptr() if dW is not None else None))

    # ---- statistics
    def stats(self, step=False):
        """The engine's statistics (tempo_mm_stats) as a dict of numbers: products, encryptions,
        bytes_up, verify_failures, flops, t_verify, ... for the whole run, or with step=True
        since the last stats(step=True) call (which resets them)."""
        b = self._handle()
        need = ctypes.c_size_t(0)
        buf = ctypes.create_string_buffer(1024)  # the C side says what it needs when that is not enough
        st = self._lib.tempo_bridge_stats_json(b, 1 if step else 0, buf, len(buf), ctypes.byref(need))
        if st != 0 and need.value >= len(buf):
            raise TempoError(st, f"tempo: statistics need {need.value + 1} bytes (a newer libtempo?)")
        self._check(st)
        return json.loads(buf.value.decode())

    def live_workers(self):
        return self._lib.tempo_bridge_live_workers(self._handle())

    # ---- tests only
    def test_set_fault(self, worker, kind, start=0, period=1):
        """TESTS ONLY: in-process worker `worker` cheats (kind: a FAULT_KINDS name) on its result
        requests start, start + period, ... (worker_fault.h). Call it between steps."""
        self._check(self._lib.tempo_bridge_test_set_fault(self._handle(), int(worker), FAULT_KINDS[kind], int(start),
                                                          int(period)))

    def test_faults(self, worker):
        """TESTS ONLY: results worker `worker` has falsified so far."""
        return int(self._lib.tempo_bridge_test_faults(self._handle(), int(worker)))
