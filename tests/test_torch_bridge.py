"""test_torch_bridge.py - the PyTorch bridge (python/tempo_torch) against plain PyTorch.

Run by tests/test_torch_bridge.sh with Debian's /usr/bin/python3 (torch 1.13), PYTHONPATH=python
and TEMPO_LIB=build/libtempo.so.*. Prints "ok - NAME" / "not ok - NAME: why" per check, then
"N passed, N failed"; exits 1 on any failure.

1. resnet20, the PyTorch twin of ../shared/tools/peer_bench.py (its own definition when that file
   is there, else the copy below, checked against it when both exist): 20 SGD steps (batch 8,
   3x32x32, momentum 0.9) through the bridge in tempo mode with 2 in-process workers follow the
   same 20 steps in plain PyTorch (same init, same data) within float tolerance, and in every step
   the engine computed exactly the products and flops the model has (counted by forward hooks on
   the plain model: every Conv2d/Linear forward, its dW, and its dX where the input needs one).
2. Integrity: a worker that falsifies every result is caught (each falsified result rejected and
   recomputed, the worker evicted) and the training still follows PyTorch.
3. Conv2d variants (stride, dilation, groups, reflect padding, 'same'), a Linear on 3-d input and
   attention's matmuls (peer_bench's ViT Attention) against torch, forward and every gradient.
4. The step boundary: each misuse that would give a silently wrong gradient is an error.
"""

import copy
import math
import os
import sys
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F

import tempo_torch as tt

torch.set_num_threads(1)
RESULTS = []


def check(name, cond, why=""):
    RESULTS.append(bool(cond))
    print(f"ok - {name}" if cond else f"not ok - {name}: {why}", flush=True)


def raises(name, exc, fn, needle):
    try:
        fn()
    except exc as e:
        check(name, needle in str(e), f"message {str(e)!r} lacks {needle!r}")
        return
    except Exception as e:  # the wrong kind of error
        check(name, False, f"raised {type(e).__name__}: {e}")
        return
    check(name, False, f"no {exc.__name__} raised")


# ---------------------------------------------------------------- the resnet20 twin
def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def projection(cin, cout, stride):
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.shortcut = projection(cin, planes, stride)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(3, 16), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        layers, cin = [], 16
        for s, w in enumerate([16, 32, 64]):
            for b in range(3):
                layers.append(BasicBlock(cin, w, 2 if (s > 0 and b == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


def peer_bench_models():
    """peer_bench.py's build_models() when ../shared/tools/peer_bench.py is there, else None."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools", "peer_bench.py")
    if not os.path.exists(path):
        return None
    import importlib.util
    spec = importlib.util.spec_from_file_location("peer_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_models()


# ---------------------------------------------------------------- products a model has
class ProductCounter:
    """Counts, on a plain (not offloaded) model, the engine products one pass should make:
    each Conv2d/Linear forward (one instance per group), then in training its dW (weight
    requires grad) and its dX (input requires grad), with their flops 2 m n p each."""

    def __init__(self, model):
        self.products = self.flops = 0
        self.handles = [m.register_forward_hook(self.hook) for m in model.modules()
                        if isinstance(m, (nn.Conv2d, nn.Linear))]

    def hook(self, mod, inp, out):
        x = inp[0]
        if isinstance(mod, nn.Conv2d):
            g = mod.groups
            m = out.shape[0] * out.shape[2] * out.shape[3]
            n = mod.in_channels // g * mod.kernel_size[0] * mod.kernel_size[1]
            p = mod.out_channels // g
        else:
            g, m, n, p = 1, out.numel() // out.shape[-1], mod.in_features, mod.out_features
        outs = 1
        if torch.is_grad_enabled():
            outs += int(mod.weight.requires_grad) + int(x.requires_grad)
        self.products += outs * g
        self.flops += outs * g * 2 * m * n * p


LR, MOMENTUM = 0.002, 0.9


def train(model, batches, steps, engine=None, before_step=None, after_step=None):
    """SGD (lr LR, momentum MOMENTUM) over batches; the per-step losses. With engine, the
    optimizer is wrapped so that each step ends the engine's step first. before_step(i, x, y)
    runs before step i's forward, after_step(i, loss) after its backward (before the update)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    if engine is not None:
        tt.wrap_optimizer(opt, engine)
    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        if before_step:
            before_step(i, x, y)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if after_step:
            after_step(i, loss)
        opt.step()
        losses.append(loss.item())
    return losses


def flat_grad(model):
    return torch.cat([p.grad.reshape(-1).double() for p in model.parameters()])


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def data(n_batches, batch, shape, classes, seed):
    """Learnable batches: each image is its class's fixed random prototype plus noise."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randn(classes, *shape, generator=g)
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, classes, (batch,), generator=g)
        out.append((proto[y] + 0.5 * torch.randn(batch, *shape, generator=g), y))
    return out


# ---------------------------------------------------------------- 1. resnet20, 20 steps
def test_resnet20():
    pb = peer_bench_models()
    if pb is not None:
        twin = pb[0]["resnet20"]
        a, b = twin().state_dict(), ResNet20().state_dict()
        check("the copy of resnet20 has peer_bench's parameter names and shapes",
              [(k, v.shape) for k, v in a.items()] == [(k, v.shape) for k, v in b.items()])
        print("# resnet20 from ../shared/tools/peer_bench.py")
    else:
        twin = ResNet20
        print("# resnet20 from this file's copy (../shared/tools/peer_bench.py is not there)")
    torch.manual_seed(0)
    ref = twin()
    init = copy.deepcopy(ref.state_dict())
    batches = data(20, 8, (3, 32, 32), 10, seed=1)
    steps = 20

    # plain PyTorch, float32 and float64 (the float64 run measures how much rounding alone moves
    # this trajectory: batch-8 BN and ReLUs make it sensitive, a ReLU input of 1e-6 flips sign)
    counter = ProductCounter(ref)
    expected = []
    ref_losses = train(ref, batches, steps,
                       after_step=lambda i, loss: (expected.append((counter.products, counter.flops)),
                                                   setattr(counter, "products", 0), setattr(counter, "flops", 0)))
    ref64 = twin().double()
    ref64.load_state_dict(init)
    ref64_losses = train(ref64, [(x.double(), y) for x, y in batches], steps)
    check("resnet20 has 22 products forward and 43 backward per step (21 convs, 1 linear, no dX for the images)",
          expected[0][0] == 65, f"counted {expected[0][0]}")

    # the bridge: the same init, data and optimizer. Before every step, plain twins in float64 (the
    # exact answer) and float32 (PyTorch's own rounding) take the bridge model's current state
    # (parameters and BN buffers) and compute the same step, so each step is also compared on
    # identical weights. A step where some ReLU input lies within rounding of 0 flips that ReLU and
    # moves the gradient by up to ~1e-2; PyTorch's float32 has such steps too.
    model = twin()
    model.load_state_dict(init)
    s64, s32 = twin().double(), twin()
    tt.offload(model, mode="tempo", workers=2, seed=11, protect="none")  # every product to the workers
    engine = tt.engine_of(model)
    got, forced = [], []

    def before(i, x, y):
        row = []
        for sh, xx in ((s64, x.double()), (s32, x)):
            sh.load_state_dict(model.state_dict())
            sh.zero_grad()
            loss = F.cross_entropy(sh(xx), y)
            loss.backward()
            row += [loss.item(), flat_grad(sh)]
        forced.append(row)

    def after(i, loss):
        l64, g64, l32, g32 = forced[i]
        forced[i] = (abs(loss.item() - l64) / l64, rel_err(flat_grad(model), g64), rel_err(g32, g64))
        got.append(engine.stats(step=True))  # this step's products, all of its backward included

    br_losses = train(model, batches, steps, engine=engine, before_step=before, after_step=after)
    check("20 steps ran", len(br_losses) == steps == len(got))
    d_loss = max(f[0] for f in forced)
    d_br, d_32 = sorted(f[1] for f in forced), sorted(f[2] for f in forced)
    print(f"# same weights, each step, against float64: loss rel. difference max {d_loss:.1e}; whole-gradient rel. "
          f"difference: bridge {' '.join(f'{v:.0e}' for v in d_br)}")
    print(f"#   PyTorch float32 {' '.join(f'{v:.0e}' for v in d_32)}")
    check("each step on the same weights: the loss matches float64 PyTorch within 1e-5 relative", d_loss < 1e-5,
          f"{d_loss:.2e}")
    check("each step on the same weights: the gradient matches float64 PyTorch within 2e-5 in at least 3 of 20 "
          "steps (float32 rounding) and within 5e-2 in every step (a ReLU flip)", d_br[2] < 2e-5 and d_br[-1] < 5e-2,
          f"3rd best {d_br[2]:.2e}, worst {d_br[-1]:.2e}")

    def worst(a, b):
        return max(abs(p - q) / q for p, q in zip(a, b))
    w32, w_br, w_br64 = worst(ref_losses, ref64_losses), worst(br_losses, ref_losses), worst(br_losses, ref64_losses)
    print(f"# losses torch  {[round(v, 5) for v in ref_losses[:3]]} ... {ref_losses[-1]:.6f}")
    print(f"# losses bridge {[round(v, 5) for v in br_losses[:3]]} ... {br_losses[-1]:.6f}")
    print(f"# free-running 20 steps, worst loss rel. difference: bridge vs torch {w_br:.1e}, bridge vs torch float64 "
          f"{w_br64:.1e}, torch float32 vs float64 {w32:.1e}")
    check("the 20 free-running steps follow PyTorch's losses within 2e-2 relative (rounding alone moves them by "
          f"{w32:.0e})", w_br < 2e-2, f"{w_br:.2e}")
    check("the loss fell (the comparison is not of a frozen model)", ref_losses[-1] < ref_losses[0] - 0.2,
          f"{ref_losses[0]} -> {ref_losses[-1]}")
    # every step: the engine's products and flops are exactly what the model has
    bad = [i for i in range(steps) if (got[i]["products"], got[i]["flops"]) != expected[i]]
    check("every step offloaded exactly the model's products and flops (65 products, engine vs forward hooks)",
          not bad, f"steps {bad[:3]}: engine {[(got[i]['products'], got[i]['flops']) for i in bad[:3]]} "
          f"vs model {[expected[i] for i in bad[:3]]}")
    run = engine.stats()
    print(f"# engine run totals: products {run['products']}, encryptions {run['encryptions']} "
          f"(naive {run['naive_encryptions']}), bytes up {run['bytes_up']}, down {run['bytes_down']}, "
          f"verify failures {run['verify_failures']}, t_verify {run['t_verify']:.3f} s")
    check("the run's totals: 20 x 65 products, none rejected, both workers alive",
          run["products"] == 20 * 65 and run["verify_failures"] == 0 and run["recomputed"] == 0 and
          run["live_workers"] == 2, str(run))
    check("the key-shift: 2 encryptions per forward product, 1 per backward site (22 sites)",
          run["encryptions"] == 20 * (2 * 22 + 22), f"{run['encryptions']}")
    check("nothing is left pending after the wrapped optimizer's step", engine.pending == 0)
    engine.close()


def test_protection_policy():
    """resnet20 under tempo mode's default policy ("spatial": the stem, which sees the images, and
    the head, whose backward carries the labels, are computed by the master; every 3x3
    convolution goes to the workers blinded with mixing blocks) and "none" (every product to the
    workers): the same step as PyTorch, with only the other products blinded and sent to the
    workers (2 encryptions per forward product, 1 per backward site)."""
    twin = ResNet20
    torch.manual_seed(0)
    ref = twin().double()
    x, y = data(1, 8, (3, 32, 32), 10, seed=1)[0]
    F.cross_entropy(ref(x.double()), y).backward()
    for protect, offloaded in ((None, 20), ("none", 22)):
        model = twin()
        model.load_state_dict(ref.state_dict())
        tt.offload(model, mode="tempo", workers=2, seed=3, protect=protect)
        e = tt.engine_of(model)
        name = protect or "default"
        if protect is None:
            check("offload() declares the stem as raw input and fc as the head",
                  model.stem[0]._tempo_kind == e.site_kind("raw_input") and model.fc._tempo_kind == e.site_kind("head")
                  and model.layers[0].conv1._tempo_kind == 0)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        e.step_end()
        st = e.stats()
        g = rel_err(flat_grad(model), flat_grad(ref))
        check(f"policy {name} ({st['protect']}): the step's loss and gradient match float64 PyTorch",
              abs(loss.item() - F.cross_entropy(ref(x.double()), y).item()) < 1e-5 * loss.item() and g < 5e-2,
              f"gradient {g:.2e}")
        check(f"policy {name}: 65 products, {offloaded} of the 22 sites on the workers "
              f"({3 * offloaded} encryptions)", st["products"] == 65 and st["encryptions"] == 3 * offloaded,
              f"products {st['products']}, encryptions {st['encryptions']}, protect {st['protect']}")
        if protect is None:
            check("tempo mode's default policy is spatial", st["protect"] == "spatial", st["protect"])
        e.close()


# ---------------------------------------------------------------- 2. a cheating worker
class SmallNet(nn.Module):
    """Conv2d variants (groups, stride, dilation, reflect padding, 'same') and Linear layers."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2, padding_mode="reflect")
        self.c3 = nn.Conv2d(8, 6, 3, dilation=2, padding="same", bias=False)
        self.c4 = nn.Conv2d(6, 6, (1, 3), stride=(1, 2), groups=6)
        self.fc1 = nn.Linear(6 * 6 * 2, 32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.relu(self.c3(x))
        x = self.c4(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


def test_cheating_worker():
    torch.manual_seed(3)
    ref = SmallNet()
    # protect none: every product on the workers, so the cheater's results are counted exactly
    model = tt.offload(copy.deepcopy(ref), mode="tempo", workers=2, seed=5, protect="none")
    engine = tt.engine_of(model)
    engine.test_set_fault(1, "wrong_element", start=0, period=1)
    batches = data(4, 4, (3, 12, 12), 5, seed=2)
    a = train(model, batches, 4, engine=engine)
    b = train(ref, batches, 4)
    st = engine.stats()
    injected = engine.test_faults(1)
    print(f"# falsified {injected}, rejected {st['verify_failures']}, recomputed {st['recomputed']}, "
          f"evicted {st['evictions']}")
    check("every falsified result was rejected by Freivalds' check and recomputed (3, then eviction)",
          injected == 3 and st["verify_failures"] == 3 and st["recomputed"] == 3 and st["evictions"] == 1 and
          engine.live_workers() == 1, str(st))
    diff = max(abs(x - y) / abs(y) for x, y in zip(a, b))
    check("training with the cheating worker still follows PyTorch", diff < 1e-4, f"{diff:.3e}")
    engine.close()

    # the same worker with the checks off: its wrong results go through (so the check above is the check's doing)
    model = tt.offload(copy.deepcopy(ref), mode="tempo", workers=2, seed=5, verify_rounds=0, protect="none")
    engine = tt.engine_of(model)
    engine.test_set_fault(1, "scale", start=0, period=1)
    x, _ = batches[0]
    with torch.no_grad():
        d = (model(x) - ref(x)).abs().max().item()
    check("without checks (verify_rounds=0) a scaling worker's results get through", d > 1e-3,
          f"difference {d:.2e}")
    engine.close()


# ---------------------------------------------------------------- 3. layers against torch
def grads_match(name, model, ref, x, tol=1e-4):
    model.zero_grad(set_to_none=True)
    ref.zero_grad(set_to_none=True)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = model(xa), ref(xb)
    gy = torch.randn_like(yb)
    (ya * gy).sum().backward()
    (yb * gy).sum().backward()
    worst = ((ya - yb).abs().max() / yb.abs().max()).item()
    worst = max(worst, ((xa.grad - xb.grad).abs().max() / xb.grad.abs().max()).item())
    for (n, pa), (_, pb) in zip(model.named_parameters(), ref.named_parameters()):
        worst = max(worst, ((pa.grad - pb.grad).abs().max() / (pb.grad.abs().max() + 1e-12)).item())
    check(f"{name}: output, input gradient and every parameter gradient match torch", worst < tol,
          f"worst relative difference {worst:.2e}")


def test_layers():
    torch.manual_seed(4)
    ref = SmallNet()
    for mode in ("tempo", "plain", "local"):
        model = tt.offload(copy.deepcopy(ref), mode=mode, workers=3, seed=9)
        grads_match(f"conv variants and linears, {mode} mode", model, ref, torch.randn(3, 3, 12, 12))
        e = tt.engine_of(model)
        e.step_end()
        # one pass: 6 layers, 12 forward instances (c2 has 2 groups, c4 6: 1+2+1+6+1+1), backward dX and dW
        # of each, wherever they ran (tempo mode's default policy computes c1 and fc2 on the master)
        check(f"{mode} mode: 36 product instances counted", e.stats()["products"] == 36, str(e.stats()["products"]))
        e.close()
    lin = nn.Linear(7, 4)
    model = tt.offload(copy.deepcopy(lin), workers=2, seed=3)
    grads_match("Linear on a (2, 5, 7) input", model, lin, torch.randn(2, 5, 7))
    tt.engine_of(model).step_end()
    unbatched = nn.Conv2d(2, 3, 3)
    model = tt.offload(copy.deepcopy(unbatched), workers=2, seed=3)
    grads_match("Conv2d on an unbatched (C, H, W) input", model, unbatched, torch.randn(2, 6, 6))
    tt.engine_of(model).step_end()

    pb = peer_bench_models()
    if pb is None:
        print("# attention: peer_bench.py is not there; its Attention is rebuilt here")
    attention_cls = pb[1] if pb is not None else None
    if attention_cls is None:
        class Attention(nn.Module):
            def __init__(self, dim, heads):
                super().__init__()
                self.heads, self.head_dim, self.scale = heads, dim // heads, (dim // heads) ** -0.5
                self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

            def forward(self, x):
                B, N, C = x.shape
                q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
                attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
                return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        attention_cls = Attention
    torch.manual_seed(5)
    att = attention_cls(16, 4)
    model = tt.offload(copy.deepcopy(att), workers=2, seed=3, attention=(attention_cls,))
    grads_match("attention (qkv, Q K^T, A V, proj) on (2, 9, 16)", model, att, torch.randn(2, 9, 16))
    e = tt.engine_of(model)
    e.step_end()
    # forward: qkv, proj (1 each), Q K^T and A V (8 instances each: 2 samples x 4 heads) = 18; backward dX+dW: 36
    check("attention: the matmuls went through the engine too (18 forward, 36 backward instances)",
          e.stats()["products"] == 54, str(e.stats()["products"]))
    e.close()


# ---------------------------------------------------------------- 4. the step boundary
def test_misuse():
    torch.manual_seed(6)
    x, y = torch.randn(4, 3, 12, 12), torch.randint(0, 5, (4,))
    model = tt.offload(SmallNet(), workers=2, seed=1)
    e = tt.engine_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # NOT wrapped
    F.cross_entropy(model(x), y).backward()
    opt.step()  # weights change while the engine still holds the step

    def second_step():
        F.cross_entropy(model(x), y).backward()
    raises("an unwrapped optimizer.step() before step_end() is refused at the next forward", tt.StepError,
           second_step, "changed in place before step_end()")
    raises("step_end() after optimizer.step() is refused too (and still ends the step)", tt.StepError, e.step_end,
           "before optimizer.step()")
    check("after that step_end() nothing is pending", e.pending == 0)

    loss = F.cross_entropy(model(x), y)
    e.step_end()
    raises("backward after step_end() ended its step is refused", tt.StepError, loss.backward,
           "after step_end() ended its step")

    tt.wrap_optimizer(opt, model)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    check("with the wrapped optimizer the next steps run", math.isfinite(F.cross_entropy(model(x), y).item()))
    e.step_end()

    # gradient accumulation: two micro-batches per step, each forward its own site
    opt.zero_grad()
    for i in range(2):
        F.cross_entropy(model(x[2 * i:2 * i + 2]), y[2 * i:2 * i + 2]).backward()
    check("gradient accumulation: two forwards of each layer in one step (2 x 6 sites)", e.pending == 12,
          str(e.pending))
    opt.step()

    with torch.no_grad():
        before = e.stats()["products"]
        model(x)
    check("inference under no_grad: 12 forward instances, nothing pending",
          e.stats()["products"] - before == 12 and e.pending == 0)

    capped = tt.Engine(workers=2, seed=1, max_pending=7)
    tt.offload(model, engine=capped)
    model(x)  # 7 training forwards
    raises("training forwards without step_end() beyond max_pending are refused", tt.StepError,
           lambda: model(x), "training forwards without step_end()")
    capped.step_end()
    raises("float64 models are refused with a clear message", TypeError, lambda: model.double()(x.double()),
           "float32")
    model.float()
    raises("an unknown mode is refused", tt.TempoError, lambda: tt.Engine(mode="fast"), "unknown mode 'fast'")
    raises("an unknown protection policy is refused", tt.TempoError, lambda: tt.Engine(protect="most"),
           "unknown protection policy 'most'")
    raises("offload() refuses a head that is not one of its layers", ValueError,
           lambda: tt.offload(SmallNet(), engine=capped, head="nothing"), "no offloaded nn.Linear/nn.Conv2d named")
    raises("shield mode with 2 workers is refused", tt.TempoError, lambda: tt.Engine(mode="shield", workers=2),
           "")
    raises("fault injection on a worker that does not exist is refused", tt.TempoError,
           lambda: capped.test_set_fault(5, "zero"), "a worker in 0..workers-1")
    if os.path.exists(os.path.join(os.path.dirname(os.environ.get("TEMPO_LIB", "build/x")), "libtempo_mpi.so")):
        raises("MPI workers outside mpirun are refused with the command to use", tt.TempoError,
               lambda: tt.Engine(transport="mpi"), "MPI workers need mpirun")
    raises("an unknown transport is refused", ValueError, lambda: tt.Engine(transport="tcp"), "'inproc' or 'mpi'")
    tt.restore(model)
    before = capped.stats()["products"]
    model(x)
    check("restore(): the model computes in torch again", capped.stats()["products"] == before)
    capped.close()
    raises("a closed engine refuses work", tt.TempoError, capped.stats, "closed")


def main():
    for t in (test_resnet20, test_protection_policy, test_cheating_worker, test_layers, test_misuse):
        try:
            t()
        except Exception:
            traceback.print_exc()
            check(t.__name__, False, "raised")
    failed = RESULTS.count(False)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
