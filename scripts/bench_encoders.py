#!/usr/bin/env python3
"""CPU wall time of the CLIP DFN5B vision tower at its real shape (random weights): open_clip (what MMAudio
runs: `encode_image(normalize=True)` under inference_mode) next to foley's candle port, same input size, same
machine, one after the other.

    python3 scripts/bench_encoders.py [--frames 8] [--threads N] [--repeats 2]

The candle side is `cargo run --release -p foley-models --example clip_vision_bench -- FRAMES REPEATS`.
"""
import argparse
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--skip-candle", action="store_true")
    args = ap.parse_args()

    import open_clip
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.time()
    model = open_clip.create_model("ViT-H-14-378-quickgelu", force_image_size=384).eval()
    print(f"open_clip init {time.time() - t:.1f} s, torch threads {torch.get_num_threads()}", flush=True)
    x = torch.randn(args.frames, 3, 384, 384)
    with torch.inference_mode():
        for i in range(args.repeats):
            t = time.time()
            y = model.encode_image(x, normalize=True)
            s = time.time() - t
            print(f"open_clip clip vision: {args.frames} frames in {s:.2f} s ({s / args.frames:.2f} s/frame) "
                  f"run {i} out {tuple(y.shape)}", flush=True)
    del model
    if not args.skip_candle:
        env = dict(os.environ)
        subprocess.run(["cargo", "run", "--release", "-q", "-p", "foley-models", "--example", "clip_vision_bench",
                        "--", str(args.frames), str(args.repeats)], cwd=ROOT, env=env, check=True)


if __name__ == "__main__":
    main()
