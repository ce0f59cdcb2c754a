"""tempo_torch - train a PyTorch model with Tempo: every product of its nn.Linear and nn.Conv2d
layers (and, on request, its attention matmuls) goes through Tempo's engine, blinded with fresh
MM-obfuscation keys, computed by untrusted workers, checked with Freivalds' test and unblinded on
the master; everything else (bias, activations, normalisation, the loss, the optimizer) stays in
PyTorch. The model, its training loop and its state_dict stay as they are.

    import tempo_torch
    model = tempo_torch.offload(model, mode="tempo", workers=2)
    opt = tempo_torch.wrap_optimizer(torch.optim.SGD(model.parameters(), lr=0.1), model)
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()                       # ends the engine's step, then updates the weights
    print(tempo_torch.engine_of(model).stats())

It needs libtempo.so (`make` builds build/libtempo.so.*; TEMPO_LIB names another; MPI workers,
Engine(transport="mpi"), use build/libtempo_mpi.so) and torch
(Debian's python3-torch 1.13 or newer). docs/bring-your-own.md, "PyTorch bridge", has the details.
"""

from .engine import Engine, StepError, TempoError
from .offload import engine_of, offload, restore, step_end, wrap_optimizer
from .ops import conv2d, linear, matmul, product

__all__ = ["Engine", "TempoError", "StepError", "offload", "restore", "engine_of", "step_end", "wrap_optimizer",
           "product", "linear", "conv2d", "matmul"]
