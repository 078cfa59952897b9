#!/usr/bin/env python3
"""Parity fixture + manifest generator: runs the PyTorch reference (MMAudio, pinned commit) on tiny random
configs and writes what the Rust parity tests compare against.

One command on a fresh machine (CPU torch is enough; ~5 GB of wheels):

    pip install torch torchvision torchaudio open-clip-torch timm einops torchdiffeq colorlog omegaconf safetensors
    python3 scripts/gen_parity.py --manifests

The reference is never copied into this repository. It is taken from `--reference` / `$FOLEY_MMAUDIO_REF`
(a git repository or bare git dir holding commit 974010a, or a plain checkout of it); without either, it is
cloned from https://github.com/hkchengrex/MMAudio into `~/.cache/foley/mmaudio.git`. The pinned commit is
extracted with `git archive` into a temporary directory that is put on `sys.path`.

Groups live in `scripts/parity/<group>.py`; each exposes `fixtures(ctx)` and `manifests(ctx)` (see `Ctx`
in scripts/parity/common.py) and is listed in GROUPS below.

The reference's own bf16 error (the bound of foley's bf16 paths: "foley's bf16 error must not exceed the
reference's own bf16 error"), written into the committed fixtures' meta.json:

    python3 scripts/gen_parity.py --bf16-errors --threads 1 [--only GROUP] [--fixture NAME]

This generates nothing: it reads each fixture under --out as stored (weights.safetensors, inputs.safetensors,
outputs.safetensors, meta.json), rebuilds the reference module from the stored weights, runs it as MMAudio's
demo.py runs it in bf16 on the CPU (`net.to(torch.bfloat16)` / `feature_utils.to(torch.bfloat16)`: every
parameter and buffer in bf16, float inputs cast to bf16, integer inputs unchanged; demo.py's
`update_seq_lengths` after the cast keeps the RoPE tables in f32, as in the reference) and adds to meta.json

    "reference_bf16": {"max_abs_err": {output: max |bf16 output - stored f32 output|},
                       "scale": {output: max(1, max |stored f32 output|)},
                       "f32_rerun_max_abs_err": {output: ...}, "torch": "<version>", "how": "<one line>"}

(f32_rerun_max_abs_err: the same re-run in f32, which must reproduce the stored outputs -- the check that the
numbers describe exactly the fixtures the Rust tests read). Every other key of meta.json and every other file
is left as it is. Fixtures without a float model output (clip_tokenizer, preprocess_down, sequence_lengths) are
skipped and listed. Each group exposes `BF16` / `BF16_SKIP` (module kind -> runner / reason).
"""
import argparse
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from parity.common import Ctx, REFERENCE_COMMIT, bf16_errors, prepare_reference  # noqa: E402

# group name -> module under scripts/parity/ exposing fixtures(ctx) and manifests(ctx)
GROUPS = {
    "generation": "parity.generation",  # MM-DiT, sampler, VAE, BigVGAN, mel (issue 4)
    "encoders": "parity.encoders",  # CLIP, Synchformer (issue 5)
    "tinytest": "parity.tinytest",  # the tiny-test model bundle + sequence lengths at other durations (issue 6)
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0, help="seed of random weights and inputs")
    ap.add_argument("--config", default="tiny", help="tiny config choice understood by every group: tiny | tiny2")
    ap.add_argument("--out", default=str(ROOT / "tests/fixtures/parity"), help="fixture root")
    ap.add_argument("--manifests", nargs="?", const=str(ROOT / "models/manifests"), default=None,
                    help="also write key/shape manifests of the real checkpoints (meta device) to this dir")
    ap.add_argument("--no-fixtures", action="store_true", help="only write manifests")
    ap.add_argument("--only", action="append", choices=sorted(GROUPS), help="run only this group (repeatable)")
    ap.add_argument("--reference", default=os.environ.get("FOLEY_MMAUDIO_REF"),
                    help=f"MMAudio git repo / checkout holding commit {REFERENCE_COMMIT} (env FOLEY_MMAUDIO_REF)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--bf16-errors", action="store_true",
                    help="write the reference's own bf16 error into the stored fixtures' meta.json (see above); "
                         "generates no fixture and no manifest")
    ap.add_argument("--fixture", action="append", help="with --bf16-errors: only this fixture (repeatable)")
    args = ap.parse_args()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    ref_path = prepare_reference(args.reference)
    ctx = Ctx(out=Path(args.out), seed=args.seed, config=args.config, ref_path=ref_path,
              manifests_dir=Path(args.manifests) if args.manifests else None)
    if args.bf16_errors:
        runners, skips = {}, {}
        for name in args.only or list(GROUPS):
            mod = importlib.import_module(GROUPS[name])
            runners.update(mod.BF16)
            skips.update(mod.BF16_SKIP)
        print(f"reference bf16 errors -> {ctx.out}/*/meta.json (torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s))", flush=True)
        skipped = bf16_errors(ctx.out, runners, skips, only=args.fixture, partial=bool(args.only))
        for fixture, why in sorted(skipped.items()):
            print(f"skipped {fixture}: {why}")
        return
    for name in args.only or list(GROUPS):
        try:
            mod = importlib.import_module(GROUPS[name])
        except ModuleNotFoundError as e:
            if e.name != GROUPS[name]:
                raise
            print(f"[{name}] {GROUPS[name]} not written yet; skipped", file=sys.stderr)
            continue
        if not args.no_fixtures:
            print(f"[{name}] fixtures -> {ctx.out}", flush=True)
            mod.fixtures(ctx)
        if ctx.manifests_dir is not None:
            print(f"[{name}] manifests -> {ctx.manifests_dir}", flush=True)
            mod.manifests(ctx)


if __name__ == "__main__":
    main()
