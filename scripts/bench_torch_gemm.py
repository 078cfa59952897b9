#!/usr/bin/env python3
"""torch's GEMM rates at the shapes `foley bench --gemm` measures, in f32 and bf16 (the reference's default dtype),
so that both sides' kernels can be compared in one sitting on one machine:

    python3 scripts/bench_torch_gemm.py [--threads 2] [--json]

Each shape is `x (m×k) @ w (k×n)`, best of 3 after a warm-up; torch picks its own kernels (oneDNN / MKL).
"""
import argparse
import json
import time

import torch

SHAPES = [("clip qkv", 2308, 3840, 1280), ("clip mlp fc1", 2308, 5120, 1280), ("clip mlp fc2", 2308, 1280, 5120),
          ("dit qkv", 500, 1344, 448), ("dit mlp in", 500, 1792, 448), ("dit mlp out", 500, 448, 1792)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name, m, n, k in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            x, w = torch.randn(m, k).to(dtype), (torch.randn(k, n) / k ** 0.5).to(dtype)
            best = float("inf")
            for _ in range(4):
                t = time.perf_counter()
                torch.matmul(x, w)
                best = min(best, time.perf_counter() - t)
            rows.append(dict(shape=name, m=m, n=n, k=k, dtype=str(dtype).replace("torch.", ""),
                             gflops=2 * m * n * k / best / 1e9))
    report = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                  capability=torch.backends.cpu.get_cpu_capability(), gemms=rows)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"torch {report['torch']}, {report['threads']} threads, {report['capability']}")
    for r in rows:
        print(f"{r['shape']:<14} {r['m']}x{r['n']}x{r['k']:<6} {r['dtype']:<9} {r['gflops']:8.0f} GFLOP/s")


if __name__ == "__main__":
    main()
