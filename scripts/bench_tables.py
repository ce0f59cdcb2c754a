"""bench_tables.py DIR - turns the raw benchmark outputs in DIR into the markdown of docs/BENCHMARKS.md."""
import glob
import json
import os
import sys

d = sys.argv[1]


def jl(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


local = [r for r in jl(os.path.join(d, "local.jsonl")) if "ms_median" in r]
peer = []
if os.path.exists(os.path.join(d, "peer.json")):
    peer = [r for r in json.load(open(os.path.join(d, "peer.json"))) if not r.get("skipped")]

print("## Local mode (the pure-TEE baseline) against PyTorch\n")
print("One training step (forward, cross-entropy, backward, SGD momentum 0.9) on random data. PyTorch 1.13 "
      "(Debian) runs `../shared/tools/peer_bench.py` in the same run; its best of torch/OpenBLAS thread splits "
      "N/N and N/1 is used for 2 threads, as in peer-baselines.md. Ratio = Tempo / PyTorch (below 1 is faster).\n")
print("| model | batch | threads | Tempo ms (min-max) | PyTorch ms (min-max) | ratio |")
print("|---|--:|--:|--:|--:|--:|")
for r in local:
    cand = [p for p in peer if p["model"] == r["model"] and p["threads"] == r["threads"]]
    best = min(cand, key=lambda p: p["ms_median"]) if cand else None
    pt = f"{best['ms_median']:.1f} ({best['ms_min']:.1f}-{best['ms_max']:.1f}) [{best['threads']}/{best['openblas_threads']}]" if best else "n/a"
    ratio = f"{r['ms_median'] / best['ms_median']:.2f}" if best else "n/a"
    print(f"| {r['model']} | {r['batch']} | {r['threads']} | {r['ms_median']:.1f} ({r['ms_min']:.1f}-{r['ms_max']:.1f}) | {pt} | {ratio} |")
errs = [r for r in jl(os.path.join(d, "local.jsonl")) if "error" in r]
for r in errs:
    print(f"\n- {r['model']} ({r['mode']}, {r['threads']} thread(s)) could not run: {r['error']}")

modes_all = jl(os.path.join(d, "modes.jsonl"))
shield_all = jl(os.path.join(d, "shield.jsonl"))
modes = [r for r in modes_all if "model" in r]
shield = [r for r in shield_all if "model" in r]
print("\n## Local, plain and tempo modes\n")
print("Same step, master with 1 BLAS thread in local mode; plain and tempo use 2 in-process worker threads "
      "(1 BLAS thread each). Bytes are the master's uploads/downloads per step; encryptions per step against "
      "the naive scheme that blinds every backward product from scratch.\n")
print("| model | local ms | plain ms | tempo ms | tempo/plain | tempo/local | MB up/step | MB down/step | enc/step (naive) | blind ms | verify ms | unblind ms |")
print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
by = {}
for r in modes:
    by.setdefault(r["model"], {})[r["mode"]] = r
for m, rs in by.items():
    def ms(k):
        return rs[k]["ms_median"] if k in rs and "ms_median" in rs[k] else None
    l, p, t = ms("local"), ms("plain"), ms("tempo")
    tr = rs.get("tempo", {})
    f = lambda v: f"{v:.1f}" if v is not None else "n/a"
    rat = lambda a, b: f"{a / b:.2f}" if a is not None and b else "n/a"
    print(f"| {m} | {f(l)} | {f(p)} | {f(t)} | {rat(t, p)} | {rat(t, l)} | "
          f"{tr.get('bytes_up_per_step', 0) / 1e6:.2f} | {tr.get('bytes_down_per_step', 0) / 1e6:.2f} | "
          f"{tr.get('enc_per_step', 0):.0f} ({tr.get('naive_enc_per_step', 0):.0f}) | {tr.get('t_blind_ms', 0):.1f} | "
          f"{tr.get('t_verify_ms', 0):.1f} | {tr.get('t_unblind_ms', 0):.1f} |")
for r in modes:
    if "error" in r:
        print(f"\n- {r['model']} in {r['mode']} mode could not run: {r['error']}")

# ---- the offload ceiling: what infinitely fast workers could buy, given the master's own work ----
PCIE_GBPS, TF32_TFLOPS, BF16_TFLOPS = 50.0, 495.0, 990.0  # H100 SXM dense tensor-core rates (published)
gbps = [r["memcpy_gbps"] for r in modes_all + shield_all if "memcpy_gbps" in r]
memcpy_gbps = sorted(gbps)[len(gbps) // 2] if gbps else 0.0
ceiling2 = [r for r in jl(os.path.join(d, "ceiling2.jsonl")) if "model" in r]
wire16 = [r for r in jl(os.path.join(d, "wire16.jsonl")) if "model" in r]
order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in modes if "model" in r))}
# 1 thread, 2 workers: each model's rows on both wires side by side; then shield's and the 2-thread rows
base = sorted([r for r in modes + wire16 if "ms_median" in r and r["mode"] != "local"],
              key=lambda r: (order.get(r["model"], 99), r["mode"] != "plain", r.get("wire", "fp32") != "fp32"))
rows = base + [r for r in shield + ceiling2 if "ms_median" in r and r["mode"] != "local"]


def wire_of(r):
    """The operands' wire format of a row: --wire (plain, tempo) or shield's share dtype."""
    if r["mode"] == "shield":
        return r.get("shield_dtype", "f64")
    return r.get("wire", "fp32")
if rows and memcpy_gbps > 0:
    print("\n## Offload ceiling\n")
    print("How much faster than local mode a step could get if the workers were infinitely fast: the master's busy "
          "time per step (everything its threads do except wait for replies: blinding, checks, decoding, "
          "element-wise layers, loss, optimizer) against the local step of the same run. ceiling = local / master "
          "busy. Master MB: bytes its blinding, checks and decoding read and write per step; memcpy ms: the time "
          f"memcpy takes to read and write as many bytes at this run's {memcpy_gbps:.2f} GB/s (bytes copied per "
          "second, 64 MiB buffers); crypto/memcpy = (blind + verify + unblind ms) / memcpy ms. Master on 1 thread, "
          "in-process workers (plain/tempo: 2, shield: 4); the rows with 2 threads give the master's BLAS and "
          "Enc/Dec passes 2 threads against the 2-thread local step (the 2 workers then share the same 2 cores). The projected one-GPU step is a projection, not a "
          f"measurement: max(master busy, wire bytes / {PCIE_GBPS:.0f} GB/s PCIe, product FLOPs / H100 rate) with "
          f"the published dense tensor-core rates {TF32_TFLOPS:.0f} TFLOP/s TF32 and {BF16_TFLOPS:.0f} BF16; wire "
          "bytes as the row sends them (its wire: fp32 or bf16 operands with fp32 results, shield's f64 shares). cap = local / (master busy - crypto ms): the ceiling the "
          "master's other work alone (element-wise layers, im2col/col2im, loss, optimizer) allows if blinding, checks "
          "and decoding cost nothing; ceiling/cap says how close the crypto passes leave the row to it. Below the "
          "table: the better wire per model and mode (master on 1 thread), by ceiling.\n")
    print("| model | mode | wire | threads | workers | local ms | master busy ms | ceiling | cap | ceiling/cap | master MB | memcpy ms | crypto ms | crypto/memcpy | wire MB | GFLOP | projected 1-GPU ms (TF32 / BF16) | projected speed-up over local |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    loc = {(r["model"], r["threads"]): r["ms_median"] for r in modes + ceiling2
           if r.get("mode") == "local" and "ms_median" in r}
    for r in rows:
        l = loc.get((r["model"], r["threads"]))
        busy = r.get("t_master_busy_ms")
        if busy is None:
            continue
        mb = r.get("master_bytes_per_step", 0) / 1e6
        memcpy_ms = mb / 2 / memcpy_gbps  # MB moved = read + write; memcpy moves 2 bytes per byte copied
        crypto = r["t_blind_ms"] + r["t_verify_ms"] + r["t_unblind_ms"]
        wire = (r["bytes_up_per_step"] + r["bytes_down_per_step"]) / 1e6
        gf = r.get("flops_per_step", 0) / 1e9
        pcie_ms = wire / PCIE_GBPS
        p32 = max(busy, pcie_ms, gf / TF32_TFLOPS)
        p16 = max(busy, pcie_ms, gf / BF16_TFLOPS)
        ceil_s = f"{l / busy:.2f}" if l else "n/a"
        other = busy - crypto
        cap_s = f"{l / other:.2f} | {other / busy:.2f}" if l and other > 0 else "n/a | n/a"
        sp = f"{l / p32:.2f} / {l / p16:.2f}" if l else "n/a"
        print(f"| {r['model']} | {r['mode']} | {wire_of(r)} | {r['threads']} | {r['workers']} | {l:.1f} | {busy:.1f} | {ceil_s} | {cap_s} | {mb:.0f} | "
              f"{memcpy_ms:.1f} | {crypto:.1f} | {crypto / memcpy_ms if memcpy_ms else 0:.2f} | {wire:.0f} | {gf:.2f} | "
              f"{p32:.1f} / {p16:.1f} | {sp} |" if l else
              f"| {r['model']} | {r['mode']} | {wire_of(r)} | {r['threads']} | {r['workers']} | n/a | {busy:.1f} | n/a | n/a | n/a | {mb:.0f} | {memcpy_ms:.1f} | "
              f"{crypto:.1f} | {crypto / memcpy_ms if memcpy_ms else 0:.2f} | {wire:.0f} | {gf:.2f} | {p32:.1f} / {p16:.1f} | n/a |")

    best = {}
    for r in base:
        l, busy = loc.get((r["model"], r["threads"])), r.get("t_master_busy_ms")
        if l and busy and ((r["model"], r["mode"]) not in best or l / busy > best[(r["model"], r["mode"])][1]):
            best[(r["model"], r["mode"])] = (wire_of(r), l / busy)
    if best and wire16:
        print("\nBetter wire by ceiling (master on 1 thread, 2 workers): " +
              "; ".join(f"{m} {mo}: {w} ({c:.2f})" for (m, mo), (w, c) in best.items()) + ".")

scaling_path = os.path.join(d, "scaling.jsonl")
if os.path.exists(scaling_path):
    rows = [json.loads(l) for l in open(scaling_path) if l.startswith("{")]
    rows = [r for r in rows if "ms_median" in r]
    if rows:
        print("\n## Scaling over MPI workers (scripts/bench-scaling.sh)\n")
        print("CPU tempo-worker ranks on this machine (oversubscribed when ranks > cores; data over loopback TCP)."
              " relay: W' sent once and relayed among workers; reduce: partial dW' added among workers."
              " Master upload per step: on the wire, as addressed, and the minimum (each blinded operand once"
              " + headers); download: what the master received.\n")
        print("| model | mode | workers | relay | reduce | ms/step | wire MB up | addressed MB up | minimum MB up | MB down |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['mode']} | {r['workers']} | {r.get('relay', '-')} | {r.get('reduce', '-')} | "
                  f"{r['ms_median']:.1f} | "
                  f"{r['wire_bytes_up_per_step'] / 1e6:.2f} | {r['logical_bytes_up_per_step'] / 1e6:.2f} | "
                  f"{r['min_bytes_up_per_step'] / 1e6:.2f} | {r.get('bytes_down_per_step', 0) / 1e6:.2f} |")

protect = [r for r in jl(os.path.join(d, "protect.jsonl")) if "model" in r]
if protect:
    print("\n## Protection policy\n")
    print("Tempo mode under each `--protect` policy (docs/obfuscation.md, \"Protection policy\"), 2 in-process workers, "
          "same run: `none` is tempo before the guarded default, the default (`spatial`) computes the raw-input and head "
          "products on the master and mixes every overlapping convolution. The tempo column of the table above runs "
          "the default. Master busy = step time minus the time blocked on replies (what a GPU worker would not "
          "shorten).\n")
    print("| model | policy | ms (min-max) | vs none | master busy ms | vs none | blind ms | verify ms | unblind ms | MB up/step |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    base = {}
    for r in protect:
        if r.get("protect") == "none" and "ms_median" in r:
            base.setdefault(r["model"], r)
    for r in protect:
        if "ms_median" not in r:
            print(f"| {r['model']} | {r.get('protect', '?')} | (could not run: {r.get('error', '?')}) | | | | | | | |")
            continue
        b = base.get(r["model"])
        rat = lambda a, k: f"{a / b[k]:.2f}" if b and b[k] > 0 else "-"
        print(f"| {r['model']} | {r['protect']} | {r['ms_median']:.1f} ({r['ms_min']:.1f}-{r['ms_max']:.1f}) | "
              f"{rat(r['ms_median'], 'ms_median')} | {r['t_master_busy_ms']:.1f} | {rat(r['t_master_busy_ms'], 't_master_busy_ms')} | "
              f"{r['t_blind_ms']:.1f} | {r['t_verify_ms']:.1f} | {r['t_unblind_ms']:.1f} | {r['bytes_up_per_step'] / 1e6:.1f} |")

if shield:
    print("\n## Shield mode against tempo mode\n")
    print("Same step with 4 in-process workers (shield needs 4 non-colluding workers per product; tempo uses the "
          "same 4). Shield sends float64 additive shares of every operand to four roles (docs/shield.md), so its "
          "workers compute four products in double precision for each of tempo's, and it moves more bytes (ratio "
          "below). On this 2-core "
          "machine the 4 workers share 2 cores, so the time ratio is an upper bound of what separate GPUs would see.\n")
    print("| model | tempo ms | shield ms | shield/tempo | tempo MB up | shield MB up | bytes ratio | tempo worker ms | shield worker ms | shield blind ms |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    sb = {}
    for r in shield:
        sb.setdefault(r["model"], {})[r["mode"]] = r
    for m, rs in sb.items():
        t, s_ = rs.get("tempo", {}), rs.get("shield", {})
        if "ms_median" not in t or "ms_median" not in s_:
            err = s_.get("error") or t.get("error") or "missing"
            print(f"| {m} | | | | | | | | | (could not run: {err}) |")
            continue
        print(f"| {m} | {t['ms_median']:.1f} | {s_['ms_median']:.1f} | {s_['ms_median'] / t['ms_median']:.2f} | "
              f"{t['bytes_up_per_step'] / 1e6:.1f} | {s_['bytes_up_per_step'] / 1e6:.1f} | "
              f"{s_['bytes_up_per_step'] / max(t['bytes_up_per_step'], 1):.2f} | {t['t_compute_ms']:.1f} | "
              f"{s_['t_compute_ms']:.1f} | {s_['t_blind_ms']:.1f} |")

for path in sorted(glob.glob(os.path.join(d, "bench_*.md"))):
    name = os.path.basename(path)[:-3]
    print(f"\n## {name}\n")
    print(f"Output of `build/bench/{name}`:\n")
    print(open(path).read().rstrip())
