#!/usr/bin/env python3
"""Fails (exit 1) when the modules under src/ and include/ depend on each other in a cycle.

A module is a header with the source files of the same name (include/tempo/matmul.h and
src/mm/matmul.c are module "matmul"; a header X_internal.h belongs to module X); module A depends on B when a file of A includes a
header of B. So "matmul.c includes shield_engine.h and shield_engine.h includes matmul.h"
is the cycle matmul -> shield_engine -> matmul, even though no header includes itself.
Usage: include-cycles.py [ROOT]   (default: the repository root above this script)."""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
inc_re = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
files = {}  # path relative to root -> module
for top in ("src", "include"):
    for d, _, names in os.walk(os.path.join(root, top)):
        for n in names:
            if n.endswith((".c", ".h", ".cu")):
                p = os.path.relpath(os.path.join(d, n), root)
                stem = os.path.splitext(n)[0]
                files[p] = stem[: -len("_internal")] if stem.endswith("_internal") else stem


def resolve(src, name):
    for base in (os.path.dirname(src), "include", "src"):
        p = os.path.normpath(os.path.join(base, name))
        if p in files:
            return p
    return None


deps = {}
for p, mod in files.items():
    with open(os.path.join(root, p), encoding="utf-8", errors="replace") as f:
        text = f.read()
    for name in inc_re.findall(text):
        q = resolve(p, name)
        if q and files[q] != mod:
            deps.setdefault(mod, {}).setdefault(files[q], (p, name))

# depth-first search for a back edge
state, stack, cycles = {}, [], []


def visit(m):
    state[m] = 1
    stack.append(m)
    for n in sorted(deps.get(m, {})):
        if state.get(n) == 1:
            cyc = stack[stack.index(n):] + [n]
            cycles.append(cyc)
        elif not state.get(n):
            visit(n)
    stack.pop()
    state[m] = 2


sys.setrecursionlimit(10000)
for m in sorted(set(files.values())):
    if not state.get(m):
        visit(m)
for cyc in cycles:
    print("include cycle: " + " -> ".join(cyc))
    for a, b in zip(cyc, cyc[1:]):
        src, name = deps[a][b]
        print(f"  {src} includes \"{name}\"")
print(f"{len(set(files.values()))} modules, {sum(len(v) for v in deps.values())} dependencies, {len(cycles)} cycles")
sys.exit(1 if cycles else 0)
