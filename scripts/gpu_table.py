#!/usr/bin/env python3
"""gpu_table.py - renders scripts/gpu-check.sh's bench.jsonl (bench_scaling lines) as the markdown of
docs/gpu-results.md: per model, the CPU's local step against tempo mode with one GPU worker on each
wire, and the offload ceiling measured there (local / master busy).

usage: gpu_table.py BENCH_JSONL MACHINE_LINE > gpu-results.md"""
import json
import sys
import time


def rows(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return [r for r in out if "ms_median" in r]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rs = rows(sys.argv[1])
    local = {r["model"]: r for r in rs if r["mode"] == "local"}
    print("## GPU (CUDA backend): one GPU worker\n")
    print("Written by `scripts/gpu-check.sh` on %s. %s\n" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                          sys.argv[2]))
    print("Local: the whole step on the master's CPU (1 thread). Tempo: the master on 1 CPU thread, one "
          "`tempo-worker --backend cuda` rank under mpirun (cuBLAS SGEMM for fp32, GemmEx bf16 inputs with fp32 "
          "accumulation for bf16). Master busy: the step less the master's wait for replies; ceiling = local / "
          "master busy (what infinitely fast workers would give). Medians of the timed steps.\n")
    print("| model | wire | local ms | tempo ms | speed-up over local | master busy ms | ceiling | wait ms | "
          "blind / verify / unblind ms | wire MB up | MB down |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rs:
        if r["mode"] == "local":
            continue
        loc = local.get(r["model"])
        lm = loc["ms_median"] if loc else None
        busy = r.get("t_master_busy_ms", 0.0)
        print("| %s | %s | %s | %.1f | %s | %.1f | %s | %.1f | %.1f / %.1f / %.1f | %.1f | %.1f |" % (
            r["model"], r.get("wire", "fp32"), "%.1f" % lm if lm else "n/a", r["ms_median"],
            "%.2f" % (lm / r["ms_median"]) if lm else "n/a", busy,
            "%.2f" % (lm / busy) if lm and busy > 0 else "n/a", r.get("t_wait_ms", 0.0), r.get("t_blind_ms", 0.0),
            r.get("t_verify_ms", 0.0), r.get("t_unblind_ms", 0.0), r.get("wire_bytes_up_per_step", 0) / 1e6,
            r.get("bytes_down_per_step", 0) / 1e6))


if __name__ == "__main__":
    main()
