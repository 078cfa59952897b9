#!/usr/bin/env python3
"""One MM-DiT forward (`predict_flow`, the per-step part; conditions preprocessed once) at real shapes, random
weights, f32 on CPU: the PyTorch reference and foley's candle port timed in the same run on the same machine.
With --decode, also the 8 s VAE decode + 16 kHz BigVGAN (reference vs `--example decode_bench`).

    python3 scripts/bench_dit.py [--variant small_16k] [--runs 5] [--threads N] [--decode] [--ref-dtypes f32,bf16]
        [--skip-candle]

With --threads 1 both run single-threaded on their main thread and the main thread's CPU time is comparable
even when other work shares the machine (wall times are not, then).

The reference comes from the pinned checkout (see scripts/parity/common.py: --reference / $FOLEY_MMAUDIO_REF);
the candle side is `cargo run --release -p foley-models --example dit_forward_bench`.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from parity.common import REFERENCE_COMMIT, prepare_reference  # noqa: E402


def bench_reference(variant, runs, dtype_name="f32"):
    import torch
    from mmaudio.model.networks import get_my_mmaudio
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    net = get_my_mmaudio(variant).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.02)
    if dtype != torch.float32:
        # as demo.py: the whole network cast, then the sequence lengths set again (RoPE tables recomputed in f32)
        net = net.to(dtype)
        net.update_seq_lengths(net.latent_seq_len, net.clip_seq_len, net.sync_seq_len)
    out = []
    for bs in (1, 2):
        latent = torch.randn(bs, net.latent_seq_len, net.latent_dim).to(dtype)
        clip = torch.randn(bs, net.clip_seq_len, 1024).to(dtype)
        sync = torch.randn(bs, net.sync_seq_len, 768).to(dtype)
        text = torch.randn(bs, 77, 1024).to(dtype)
        t = torch.full((bs,), 0.5).to(dtype)
        with torch.inference_mode():
            cond = net.preprocess_conditions(clip, sync, text)
            net.predict_flow(latent, t, cond)  # warm-up
            times, cpu = [], []
            for _ in range(runs):
                start, c0 = time.perf_counter(), time.thread_time()
                net.predict_flow(latent, t, cond).sum().item()
                times.append(time.perf_counter() - start)
                cpu.append(time.thread_time() - c0)
        times.sort()
        out.append(dict(impl=f"torch-{dtype_name}", variant=variant, what="predict_flow", batch=bs,
                        median_s=round(times[len(times) // 2], 4), min_s=round(times[0], 4),
                        main_thread_cpu_min_s=round(min(cpu), 4), runs=runs,
                        torch=torch.__version__, threads=torch.get_num_threads()))
    return out


def bench_reference_decode(seconds=8.0):
    import torch
    from mmaudio.ext.autoencoder.vae import get_my_vae
    from mmaudio.ext.bigvgan.models import BigVGANVocoder
    from omegaconf import OmegaConf
    import mmaudio.ext.bigvgan as bv
    torch.manual_seed(0)
    vae = get_my_vae("16k").eval()
    vae.remove_weight_norm()
    voc = BigVGANVocoder(OmegaConf.load(Path(bv.__file__).parent / "bigvgan_vocoder.yml")).eval()
    voc.remove_weight_norm()
    latents = int(-(-seconds * 16000 // 512))
    rows = []
    with torch.inference_mode():
        z = torch.randn(1, 20, latents)
        start, c0 = time.perf_counter(), time.thread_time()
        mel = vae.decode(z)
        rows.append(dict(impl="torch", stage="vae_decode", s=round(time.perf_counter() - start, 3),
                         main_thread_cpu_s=round(time.thread_time() - c0, 3)))
        mel = mel.tanh() * 0.1
        start, c0 = time.perf_counter(), time.thread_time()
        voc(mel).sum().item()
        rows.append(dict(impl="torch", stage="vocoder", s=round(time.perf_counter() - start, 3),
                         main_thread_cpu_s=round(time.thread_time() - c0, 3)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="small_16k")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--reference", default=os.environ.get("FOLEY_MMAUDIO_REF"))
    ap.add_argument("--decode", action="store_true", help="also time the 8 s 16 kHz VAE decode + vocoder")
    ap.add_argument("--ref-dtypes", default="f32",
                    help="the reference's dtypes for predict_flow, comma-separated: f32, bf16 (demo.py's default)")
    ap.add_argument("--skip-candle", action="store_true", help="time the reference only")
    args = ap.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    prepare_reference(args.reference)
    rows = [r for d in args.ref_dtypes.split(",") if d.strip() for r in bench_reference(args.variant, args.runs, d.strip())]
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    if args.threads:
        env["RAYON_NUM_THREADS"] = str(args.threads)  # candle's CPU thread count
    if not args.skip_candle:
        res = subprocess.run(["cargo", "run", "-q", "--release", "-p", "foley-models", "--example",
                              "dit_forward_bench", "--", args.variant, str(args.runs)], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True)
        rows += [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    print(f"reference commit {REFERENCE_COMMIT[:7]}, {os.cpu_count()} CPUs")
    print(f"{'impl':10} {'threads':>7} {'batch':>5} {'median s':>9} {'min s':>7} {'main-thread CPU s':>18}")
    for r in rows:
        cpu = r.get("main_thread_cpu_min_s")
        print(f"{r['impl']:10} {r['threads']:>7} {r['batch']:>5} {r['median_s']:>9.4f} {r['min_s']:>7.4f} "
              f"{cpu if cpu is not None else '-':>18}")
    if args.decode:
        drows = bench_reference_decode()
        res = subprocess.run(["cargo", "run", "-q", "--release", "-p", "foley-models", "--example", "decode_bench",
                              "--", "16k", "8"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        drows += [dict(json.loads(line), impl="candle") for line in res.stdout.splitlines() if line.startswith("{")]
        print(f"{'impl':8} {'stage':12} {'s':>7} {'main-thread CPU s':>18}   (8 s of 16 kHz audio)")
        for r in drows:
            print(f"{r['impl']:8} {r['stage']:12} {r['s']:>7.3f} {r['main_thread_cpu_s']:>18.3f}")
        rows += drows
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
