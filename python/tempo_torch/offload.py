"""offload.py - attaching an engine to a PyTorch model, and the optimizer's step boundary.

offload() gives every nn.Linear and nn.Conv2d of a model (whose forward is torch's own) an
instance-level forward that sends its product through the engine; parameters, state_dict
names, hooks and the module tree stay as they are. Optionally, the forward of chosen
attention modules runs with a torch function mode that sends their activation-by-activation
matmuls (Q K^T, A V) through the engine too.
"""

import types
import warnings

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from . import ops
from .engine import Engine

_ATTR = "_tempo_engine"
# Modules with products that offload() does not intercept: their products stay on the master.
_NOT_INTERCEPTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Bilinear,
                    nn.MultiheadAttention, nn.RNNBase, nn.Transformer)


def _linear_forward(self, x):
    return ops.linear(getattr(self, _ATTR), self, x, self._tempo_name, self._tempo_kind)


def _conv_forward(self, x):
    return ops.conv2d(getattr(self, _ATTR), self, x, self._tempo_name, self._tempo_kind)


class _MatmulMode(TorchFunctionMode):
    """Sends torch.matmul / @ / torch.bmm of two float32 CPU tensors of at least 3 dims
    (batched activations: attention's Q K^T and A V) through the engine."""

    _FUNCS = {torch.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.matmul, torch.Tensor.bmm}

    def __init__(self, engine, where):
        super().__init__()
        self.engine, self.where = engine, where

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._FUNCS and len(args) == 2 and not kwargs:
            a, b = args
            if (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dim() >= 3 and
                    a.dim() == b.dim() and a.shape[:-2] == b.shape[:-2] and a.dtype == b.dtype == torch.float32 and
                    a.device.type == b.device.type == "cpu"):
                return ops.matmul(self.engine, a, b, f"{self.where} (matmul)")
        return func(*args, **kwargs)


def _attention_forward(self, *args, **kwargs):
    with _MatmulMode(getattr(self, _ATTR), self._tempo_name):
        return type(self).forward(self, *args, **kwargs)


def _names(spec, layers, pick):
    if spec == "auto":
        return {pick(layers)} if layers else set()
    if spec is None:
        return set()
    names = {spec} if isinstance(spec, str) else set(spec)
    unknown = names - set(layers)
    if unknown:
        raise ValueError(f"tempo_torch.offload: no offloaded nn.Linear/nn.Conv2d named {sorted(unknown)}")
    return names


def offload(model, mode="tempo", workers=2, *, engine=None, verify_rounds=1, threads=1, seed=0, protect=None,
            raw_input="auto", head="auto", attention=(), lib=None, transport="inproc"):
    """Sends every product of model's nn.Linear and nn.Conv2d layers (and the matmuls inside the
    forward of modules whose class is in `attention`) through a Tempo engine; returns model,
    changed in place. engine: an existing Engine (then mode, workers, verify_rounds, threads,
    seed, protect, lib and transport are not used); otherwise a new one is made with those
    settings (Engine; transport="mpi" for tempo-worker processes under mpirun).

    The protection policy (Engine's protect; tempo mode's default "spatial" computes the layers
    that see the raw input or produce the logits on the master and mixes the spatial ones) needs to know which layers
    those are: raw_input and head name them (a module name of model.named_modules(), a list
    of names, or None for none); "auto" takes the first and the last offloaded nn.Linear /
    nn.Conv2d in the order the model registers them (stem and fc in a ResNet, patch embedding
    and head in a ViT). Convolutions whose kernel exceeds their stride are "spatial".

    A training loop must end each step with engine.step_end() after loss.backward() and before
    optimizer.step(): wrap_optimizer(optimizer, model) does that. The engine is
    engine_of(model). Layers of kinds the bridge does not intercept (Conv1d, ConvTranspose,
    nn.MultiheadAttention, RNNs, ...) are named in a warning: their products stay in torch."""
    if engine is None:
        engine = Engine(mode=mode, workers=workers, verify_rounds=verify_rounds, threads=threads, seed=seed,
                        protect=protect, lib=lib, transport=transport)
    attention = tuple(attention)

    def is_layer(m):
        return ((isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward) or
                (isinstance(m, nn.Conv2d) and type(m).forward is nn.Conv2d.forward))
    layers = [name for name, m in model.named_modules() if is_layer(m)]
    raw = _names(raw_input, layers, lambda ls: ls[0])
    heads = _names(head, layers, lambda ls: ls[-1])
    skipped = []
    for name, m in model.named_modules():
        where = name or type(m).__name__
        if is_layer(m):
            m.forward = types.MethodType(_linear_forward if isinstance(m, nn.Linear) else _conv_forward, m)
            m._tempo_kind = ((engine.site_kind("raw_input") if name in raw else 0) |
                             (engine.site_kind("head") if name in heads else 0))
        elif attention and isinstance(m, attention):
            m.forward = types.MethodType(_attention_forward, m)
        else:
            if isinstance(m, (nn.Linear, nn.Conv2d) + _NOT_INTERCEPTED):
                skipped.append(f"{where} ({type(m).__name__})")
            continue
        setattr(m, _ATTR, engine)
        m._tempo_name = where
    if skipped:
        warnings.warn("tempo_torch.offload: the products of these layers stay in torch on the master (kind not "
                      "intercepted, or a subclass with its own forward): " + ", ".join(skipped), stacklevel=2)
    model.__dict__[_ATTR] = engine  # the root finds its engine even when it has no offloaded layer itself
    return model


def restore(model):
    """Undoes offload(): every layer computes in torch again. Returns model."""
    for m in model.modules():
        if _ATTR in m.__dict__:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_tempo_name", None)
            m.__dict__.pop("_tempo_kind", None)
            del m.__dict__[_ATTR]
    return model


def engine_of(model):
    """The Engine offload() attached to model (TypeError if none)."""
    e = model.__dict__.get(_ATTR) if isinstance(model, nn.Module) else None
    if not isinstance(e, Engine):
        raise TypeError("tempo_torch: this model has no engine: call tempo_torch.offload(model) first")
    return e


def _engine(x):
    return x if isinstance(x, Engine) else engine_of(x)


def step_end(model_or_engine):
    """Ends the engine's training step (Engine.step_end)."""
    _engine(model_or_engine).step_end()


def wrap_optimizer(optimizer, model_or_engine):
    """Makes optimizer.step() end the engine's step first (keys wiped, workers' operands
    released), then update the parameters. Returns optimizer, changed in place; LR schedulers
    attached after this see an ordinary step method."""
    engine = _engine(model_or_engine)
    inner = optimizer.step
    if getattr(inner, "_tempo_wrapped", False):
        return optimizer

    def step(self, *args, **kwargs):
        engine.step_end()
        return inner(*args, **kwargs)

    step._tempo_wrapped = True
    optimizer.step = types.MethodType(step, optimizer)
    return optimizer
