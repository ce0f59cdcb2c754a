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

modes = jl(os.path.join(d, "modes.jsonl"))
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

shield = jl(os.path.join(d, "shield.jsonl"))
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
