"""test_torch_bridge_mpi.py - the PyTorch bridge with MPI workers: this process is rank 0 of
`mpirun -np 1 /usr/bin/python3 tests/test_torch_bridge_mpi.py : -np 2 build/tempo-worker --backend cpu`
(tests/test_torch_bridge_mpi.sh). Three SGD steps of a small CNN through Engine(transport="mpi")
give the same losses and weights, bit for bit, as the same steps through in-process workers with
the same key seed (the same engine and blocks, other transport), follow plain PyTorch, and the
engine's statistics show every product on the two worker processes. Prints "ok - ..." lines and
"N passed, N failed"; exits 1 on any failure.
"""

import copy
import os
import sys
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tempo_torch as tt  # noqa: E402
from test_torch_bridge import SmallNet, check, data, raises, RESULTS, train  # noqa: E402

torch.set_num_threads(1)


def main():
    try:
        torch.manual_seed(3)
        ref = SmallNet()
        batches = data(3, 4, (3, 12, 12), 5, seed=2)
        runs = {}
        for transport in ("inproc", "mpi"):
            model = tt.offload(copy.deepcopy(ref), mode="tempo", workers=2, seed=7, protect="none",
                               transport=transport)
            e = tt.engine_of(model)
            losses = train(model, batches, 3, engine=e)
            e.step_end()
            runs[transport] = (losses, model, e.stats(), e)
        plain = train(copy.deepcopy(ref), batches, 3)
        (li, mi, si, ei), (lm, mm, sm, em) = runs["inproc"], runs["mpi"]
        check("the MPI engine has the 2 tempo-worker ranks as its workers", em.workers == 2 and sm["live_workers"] == 2,
              f"{em.workers} workers, {sm['live_workers']} live")
        print(f"# losses MPI {lm}, in-process {li}, plain PyTorch {plain}")
        check("MPI workers give the in-process losses bit for bit (same key seed)", lm == li)
        check("... and the same weights bit for bit",
              all(torch.equal(a, b) for a, b in zip(mm.state_dict().values(), mi.state_dict().values())))
        d = max(abs(a - b) / b for a, b in zip(lm, plain))
        check("MPI training follows plain PyTorch within 1e-4", d < 1e-4, f"{d:.2e}")
        print(f"# MPI engine: products {sm['products']}, bytes up {sm['bytes_up']}, down {sm['bytes_down']}, "
              f"verify failures {sm['verify_failures']}")
        # a step: 12 forward instances (6 layers; groups 2 and 6), 12 dW, 11 dX (none for the images)
        check("every product went to the worker processes: 3 x 35 products, 3 x 36 encryptions, none rejected",
              sm["products"] == 3 * 35 and sm["encryptions"] == 3 * 36 and sm["verify_failures"] == 0 and
              sm["bytes_up"] > 0 and sm["products"] == si["products"], str(sm))
        raises("a second MPI engine in the process is refused", tt.TempoError,
               lambda: tt.Engine(transport="mpi"), "one MPI engine per process")
        raises("fault injection needs in-process workers", tt.TempoError, lambda: em.test_set_fault(0, "zero"),
               "in-process workers")
        ei.close()
        em.close()  # SHUTDOWN to the workers, MPI_Finalize
        raises("a closed MPI engine refuses work", tt.TempoError, em.stats, "closed")
    except Exception:
        traceback.print_exc()
        check("test_torch_bridge_mpi", False, "raised")
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
