#!/usr/bin/env python3
"""Parity fixtures at a released variant's real shapes (not committed: ~2 GB), for measuring the CPU bf16 error
where the committed tiny fixtures cannot: products that sum over hundreds to thousands of terms, not 8..256.

    python3 scripts/bf16_real_shapes.py --out /tmp/foley-real [--variant small_16k] [--duration 8] [--threads 2] \\
        [--only dit,vae,sampler] [--steps 4]
    FOLEY_PARITY_DIR=/tmp/foley-real FOLEY_TEST_DTYPE=bf16 [FOLEY_CPU_BF16=widen|emulate] \\
        cargo test --release --workspace --test parity_generation -- --nocapture mmaudio_forward vae_decoder sampler

The first command writes, with the same generator as the committed fixtures (scripts/parity/generation.py, seeded
random weights at the checkpoint's shapes, the reference's f32 outputs):
- `mmaudio_<variant>`: the MM-DiT of that variant, one clip of `--duration` s (latent/clip/sync lengths as the
  reference computes them), batch 1: preprocess_conditions, predict_flow with conditions, empty and negative;
- `vae_<16k|44k>`: the variant's VAE, decode of `--duration` s of latents and encode of a mel;
- `sampler_<variant>`: `--steps` Euler steps with CFG 4.5 (each a batch-2 forward), batch 1, from noise to the
  unnormalised latents, as eval_utils.generate runs them: the error carried through the steps;
then, as `gen_parity.py --bf16-errors` does for the committed ones, the reference run in bf16 as demo.py runs it,
whose error against its f32 output goes into each meta.json (`reference_bf16`): the bound the Rust parity tests
hold foley's bf16 to. The encoders (CLIP, Synchformer) are not here: torch's bf16 on a CPU without AVX512-BF16
takes about 18 minutes per CLIP frame.

Time, 2 threads on a 2-core Zen 3 (torch's bf16 runs at 1-2 GFLOP/s there), small_16k 8 s: 3.4 min for the
MM-DiT and the VAE, 3.5 min for 4 sampler steps; the f32 fixtures take seconds. About 1.9 GB of fixtures.
"""
import argparse
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from parity.common import Ctx, bf16_errors, prepare_reference  # noqa: E402

# the variants' MM-DiT shapes (networks.py: small = 7 heads, medium/large = 14; depth/fused as there)
DIT = {
    "small_16k": dict(heads=7, depth=12, fused=8, latent_dim=20, mode="16k"),
    "small_44k": dict(heads=7, depth=12, fused=8, latent_dim=40, mode="44k"),
    "medium_44k": dict(heads=14, depth=12, fused=8, latent_dim=40, mode="44k"),
    "large_44k": dict(heads=14, depth=21, fused=14, latent_dim=40, mode="44k"),
    "large_44k_v2": dict(heads=14, depth=21, fused=14, latent_dim=40, mode="44k", v2=True),
}
VAE = {"16k": dict(hidden_dim=384, embed_dim=20), "44k": dict(hidden_dim=512, embed_dim=40)}


def seq_lens(mode, duration):
    """latent, clip, sync lengths of `duration` s, as the reference's SequenceConfig computes them (8 s: 250, 64,
    192 at 16k; 345, 64, 192 at 44.1k)."""
    sr, spf = (16000, 256) if mode == "16k" else (44100, 512)
    latent = math.ceil(duration * sr / spf / 2)
    segments = max(0, math.floor((duration * 25 - 16) / 8) + 1)
    return latent, int(duration * 8), segments * 8


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="fixture root to write (FOLEY_PARITY_DIR of the Rust tests)")
    ap.add_argument("--variant", default="small_16k", choices=sorted(DIT))
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--reference", default=os.environ.get("FOLEY_MMAUDIO_REF"))
    ap.add_argument("--only", default="dit,vae,sampler", help="comma-separated: dit, vae, sampler")
    ap.add_argument("--steps", type=int, default=4, help="sampler steps")
    args = ap.parse_args()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    ref_path = prepare_reference(args.reference)
    from parity import generation as g

    d = DIT[args.variant]
    latent, clip, sync = seq_lens(d["mode"], args.duration)
    cfg = dict(latent_dim=d["latent_dim"], clip_dim=1024, sync_dim=768, text_dim=1024, hidden_dim=64 * d["heads"],
               num_heads=d["heads"], depth=d["depth"], fused_depth=d["fused"], latent_seq_len=latent,
               clip_seq_len=clip, sync_seq_len=sync, text_seq_len=77, v2=d.get("v2", False), mlp_ratio=4.0)
    ctx = Ctx(out=Path(args.out), seed=args.seed, config="tiny", ref_path=ref_path)
    only = set(args.only.split(","))
    if not only <= {"dit", "vae", "sampler"}:
        ap.error(f"--only {args.only}: use dit, vae, sampler")
    names = []
    t0 = time.time()
    with torch.no_grad():
        if "dit" in only:
            names.append(f"mmaudio_{args.variant}")
            g._dit_fixture(ctx, names[-1], cfg, 1, offset=1)
        if "vae" in only:
            names.append(f"vae_{d['mode']}")
            g._vae_fixture(ctx, names[-1], d["mode"], dict(vae=dict(VAE[d["mode"]], latent_len=latent), batch=1),
                           offset=7)
        if "sampler" in only:
            names.append(f"sampler_{args.variant}")
            g._sampler_fixture(ctx, names[-1], cfg, 1, args.steps, 4.5, negative=False, offset=4)
    print(f"f32 fixtures in {time.time() - t0:.0f} s; now the reference in bf16 (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)", flush=True)
    t0 = time.time()
    bf16_errors(ctx.out, g.BF16, g.BF16_SKIP, only=names)
    print(f"reference bf16 errors in {time.time() - t0:.0f} s -> {ctx.out}/*/meta.json")


if __name__ == "__main__":
    main()
