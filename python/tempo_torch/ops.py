"""ops.py - the products of nn.Linear, nn.Conv2d and attention, lowered to the engine's shape.

Every product is `batch` instances Y = X . W^T with X (batch, m, n) and W stored (batch, p, n),
float32 on the CPU, computed by the engine (blinded, verified, unblinded in tempo mode). The
lowering around it (reshape, im2col with torch's unfold, permutes) is ordinary torch code, so
autograd differentiates it; only the product itself is the custom autograd Function, whose
backward asks the engine for dX = dY . W and dW = dY^T . X under the forward's keys. Bias,
activations, normalisation and everything element-wise stay in torch on the master.
"""

import torch
import torch.nn.functional as F

from .engine import INFERENCE_SITE

_DT = torch.float32


def _operand(t, what):
    if t.device.type != "cpu":
        raise TypeError(f"tempo_torch: {what} is on {t.device}; the bridge's master works on CPU tensors")
    if t.dtype != _DT:
        raise TypeError(f"tempo_torch: {what} is {t.dtype}; the engine computes in float32 (model.float())")
    return t.contiguous()


def _shares_user_storage(t, user):
    """True when t (what the engine reads) is user's memory rather than a private copy."""
    return t.data_ptr() == user.data_ptr() or (t._base is not None and t._base is user) or t is user


class _Product(torch.autograd.Function):
    """Y (b, m, p) = X (b, m, n) . W (b, p, n)^T through the engine."""

    @staticmethod
    def forward(ctx, engine, where, site, kind, X, W):
        Y = torch.empty(X.shape[0], X.shape[1], W.shape[1], dtype=_DT)
        engine.forward(site, kind, site != INFERENCE_SITE, X, W, Y)
        ctx.engine, ctx.where, ctx.site, ctx.generation = engine, where, site, engine.generation
        ctx.save_for_backward(X, W)
        return Y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dY):
        X, W = ctx.saved_tensors  # torch refuses here if either was modified in place
        engine = ctx.engine
        if ctx.site == INFERENCE_SITE:
            raise RuntimeError(f"tempo_torch: backward of {ctx.where}, whose forward ran as inference")
        engine.check_backward(ctx.site, ctx.generation, ctx.where)
        dY = _operand(dY, f"the gradient of {ctx.where}")
        dX = torch.empty_like(X) if ctx.needs_input_grad[4] else None
        dW = torch.empty_like(W) if ctx.needs_input_grad[5] else None
        if dX is not None or dW is not None:
            engine.backward(ctx.site, X, W, dY, dX, dW)
        return None, None, None, None, dX, dW


def product(engine, X, W, where, track=(), kind=0):
    """Y (b, m, p) = X (b, m, n) . W (b, p, n)^T on the engine. `track`: the caller's tensors
    that the engine reads in place (their in-place change before step_end() is an error).
    kind: what the product exposes (Engine.site_kind), for the protection policy."""
    X, W = _operand(X, f"the input of {where}"), _operand(W, f"the weight of {where}")
    if X.dim() != 3 or W.dim() != 3 or X.shape[0] != W.shape[0] or X.shape[2] != W.shape[2]:
        raise ValueError(f"tempo_torch: {where}: X {tuple(X.shape)} and W {tuple(W.shape)} do not make a product")
    if X.numel() == 0 or W.numel() == 0:  # nothing to offload (an empty batch)
        return torch.zeros(X.shape[0], X.shape[1], W.shape[1], dtype=_DT) + 0 * (X.sum() + W.sum())
    training = torch.is_grad_enabled() and (X.requires_grad or W.requires_grad)
    site = engine.training_site([t for t in track if t is not None], where) if training else INFERENCE_SITE
    return _Product.apply(engine, where, site, kind, X, W)


def linear(engine, module, x, where, kind=0):
    """nn.Linear: x (..., in) -> (..., out); bias added in torch."""
    w = module.weight  # (out, in)
    if x.dim() < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"tempo_torch: {where}: input {tuple(x.shape)} does not end in in_features={w.shape[1]}")
    x2 = x.reshape(1, -1, w.shape[1])
    track = [w] + ([x] if x2.is_contiguous() and _shares_user_storage(x2, x) else [])
    y = product(engine, x2, w.unsqueeze(0), where, track, kind)
    y = y.reshape(*x.shape[:-1], w.shape[0])
    return y + module.bias if module.bias is not None else y


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv2d(engine, module, x, where, kind=0):
    """nn.Conv2d (any stride, padding, padding_mode, dilation, groups) by im2col: the product
    of group g is X_g (N*Ho*Wo, Cin/g*kh*kw) . W_g (Cout/g, Cin/g*kh*kw)^T, one engine
    instance per group. Bias added in torch. A kernel larger than its stride (overlapping
    windows) adds the "spatial" kind to `kind`."""
    squeeze = x.dim() == 3  # unbatched (C, H, W)
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"tempo_torch: {where}: expected a (N, C, H, W) input, got {tuple(x.shape)}")
    w = module.weight  # (Cout, Cin/g, kh, kw)
    cout, cg, kh, kw = w.shape
    g = module.groups
    stride, dil = _pair(module.stride), _pair(module.dilation)
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
        pad = (0, 0)
    else:
        pad = _pair(module.padding)
    n, c, h, wd = x.shape
    if c != cg * g:
        raise ValueError(f"tempo_torch: {where}: input has {c} channels, the layer expects {cg * g}")
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"tempo_torch: {where}: input {tuple(x.shape)} is smaller than the kernel")
    cols = F.unfold(x, (kh, kw), dilation=dil, padding=pad, stride=stride)  # (N, C*kh*kw, L), channel-major
    L = ho * wo
    X = cols.view(n, g, cg * kh * kw, L).permute(1, 0, 3, 2).reshape(g, n * L, cg * kh * kw)
    if kh > stride[0] or kw > stride[1]:
        kind |= engine.site_kind("spatial")
    Y = product(engine, X, w.reshape(g, cout // g, cg * kh * kw), where, [w], kind)  # (g, N*L, Cout/g)
    y = Y.view(g, n, L, cout // g).permute(1, 0, 3, 2).reshape(n, cout, ho, wo)
    if module.bias is not None:
        y = y + module.bias.view(1, -1, 1, 1)
    return y.squeeze(0) if squeeze else y


def matmul(engine, a, b, where="matmul"):
    """a @ b for a (..., m, n), b (..., n, p) with the same leading (batch) dims, e.g. attention's
    Q K^T and A V: one engine instance per leading index. b is handed to the engine as its
    transpose (..., p, n): a K^T given as k.transpose(-2, -1) costs no copy."""
    if a.dim() < 2 or b.dim() < 2 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise ValueError(f"tempo_torch: {where}: shapes {tuple(a.shape)} and {tuple(b.shape)} are not a batched "
                         "matmul with equal leading dimensions")
    lead = a.shape[:-2]
    m, n, p = a.shape[-2], a.shape[-1], b.shape[-1]
    X = a.reshape(-1, m, n)
    bt = b.transpose(-2, -1)
    W = bt.reshape(-1, p, n)
    track = [t for t, v in ((a, X), (b, W)) if v.is_contiguous() and _shares_user_storage(v, t)]
    return product(engine, X, W, where, track).reshape(*lead, m, p)
