#!/usr/bin/env python3
"""CPU wall time of the CLIP DFN5B vision tower at its real shape (random weights): open_clip (what MMAudio
runs: `encode_image(normalize=True)` under inference_mode) next to foley's candle port, same input size, same
machine, one after the other.

    python3 scripts/bench_encoders.py [--frames 8] [--threads N] [--repeats 2]

The candle side is `cargo run --release -p foley-models --example clip_vision_bench -- FRAMES REPEATS`; runs
alternate between the two and the best of each is reported (the machine may be shared).
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
    ap.add_argument("--synchformer", type=int, default=0, metavar="SEGMENTS",
                    help="instead: MMAudio's Synchformer on this many 16-frame segments (needs --reference)")
    ap.add_argument("--reference", default=os.environ.get("FOLEY_MMAUDIO_REF"),
                    help="MMAudio git repo / checkout (as for gen_parity.py)")
    args = ap.parse_args()
    if args.synchformer:
        return bench_synchformer(args)

    import open_clip
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    t = time.time()
    model = open_clip.create_model("ViT-H-14-378-quickgelu", force_image_size=384).eval()
    print(f"open_clip init {time.time() - t:.1f} s, torch threads {torch.get_num_threads()}", flush=True)
    x = torch.randn(args.frames, 3, 384, 384)
    exe = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release/examples/clip_vision_bench"
    if not args.skip_candle:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "foley-models", "--example",
                        "clip_vision_bench"], cwd=ROOT, check=True)
    best = {}
    # interleaved, so that load from other processes falls on both sides alike; the best run of each counts
    for i in range(args.repeats):
        with torch.inference_mode():
            t, cpu = time.time(), time.process_time()
            y = model.encode_image(x, normalize=True)
            s, cpu = time.time() - t, time.process_time() - cpu
        best["open_clip"] = min(best.get("open_clip", s), s)
        print(f"open_clip clip vision: {args.frames} frames in {s:.2f} s ({s / args.frames:.2f} s/frame) "
              f"cpu {cpu:.1f} s run {i} out {tuple(y.shape)}", flush=True)
        if not args.skip_candle:
            out = subprocess.run([str(exe), str(args.frames), "1"], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout
            print(out.strip(), flush=True)
            s = float(out.split(" frames in ")[1].split(" s ")[0])
            best["candle"] = min(best.get("candle", s), s)
    for k, s in best.items():
        print(f"best {k}: {s:.2f} s for {args.frames} frames ({s / args.frames:.2f} s/frame)")


def bench_synchformer(args):
    import sys
    import types

    import torch
    sys.path.insert(0, str(ROOT / "scripts"))
    from parity.common import prepare_reference
    from parity.encoders import _features_utils, _synchformer
    if args.threads:
        torch.set_num_threads(args.threads)
    prepare_reference(args.reference)
    fu = _features_utils()
    model = _synchformer(None)  # the real config, random weights
    frames = (args.synchformer - 1) * 8 + 16
    x = torch.randn(1, frames, 3, 224, 224)
    exe = ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "release/examples/synchformer_bench"
    if not args.skip_candle:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "foley-models", "--example",
                        "synchformer_bench"], cwd=ROOT, check=True)
    for i in range(args.repeats):
        t, cpu = time.time(), time.process_time()
        y = fu.FeaturesUtils.encode_video_with_sync(types.SimpleNamespace(synchformer=model), x)
        s, cpu = time.time() - t, time.process_time() - cpu
        print(f"MMAudio synchformer: {args.synchformer} segments in {s:.2f} s ({s / args.synchformer:.2f} s/segment) "
              f"cpu {cpu:.1f} s run {i} out {tuple(y.shape)}", flush=True)
        if not args.skip_candle:
            print(subprocess.run([str(exe), str(args.synchformer), "1"], cwd=ROOT, check=True, capture_output=True,
                                 text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
