"""Shared helpers of the parity fixture generator: the on-disk fixture and manifest formats.

A fixture is a directory `<out>/<name>/` holding `weights.safetensors` (the module's state dict exactly as the
official checkpoint stores it, i.e. *before* any load-time transform such as weight-norm folding),
`inputs.safetensors`, `outputs.safetensors` and `meta.json`:
    {"module": <kind the Rust test dispatches on>, "config": {...}, "seed": N,
     "reference": {"repo": ..., "commit": ...}, "tolerance": "module" | "sampler", ...extra}
A manifest is `models/manifests/<checkpoint>.json`: {"checkpoint": ..., "config": {...},
"tensors": {key: {"shape": [...], "dtype": "F32"}}}.
"""
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
          torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL", torch.float64: "F64"}


def _contig(tensors):
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def save_fixture(out_dir, name, module, weights, inputs, outputs, config, seed, reference, tolerance="module",
                 **extra):
    d = Path(out_dir) / name
    d.mkdir(parents=True, exist_ok=True)
    save_file(_contig(weights), str(d / "weights.safetensors"))
    save_file(_contig(inputs), str(d / "inputs.safetensors"))
    save_file(_contig(outputs), str(d / "outputs.safetensors"))
    meta = {"module": module, "config": config, "seed": seed, "reference": reference, "tolerance": tolerance}
    meta.update(extra)
    (d / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return d


def save_manifest(path, checkpoint, config, state_dict):
    tensors = {k: {"shape": list(v.shape), "dtype": DTYPES.get(v.dtype, str(v.dtype))}
               for k, v in sorted(state_dict.items())}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"checkpoint": checkpoint, "config": config, "tensors": tensors},
                                     indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# The reference and the context handed to every group's fixtures(ctx) / manifests(ctx).

REFERENCE_REPO = "https://github.com/hkchengrex/MMAudio"
REFERENCE_COMMIT = "974010a026c731054592d8f777218bd9d85a6c24"


def _git(*args, cwd=None):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True).stdout


def prepare_reference(path=None):
    """Puts the pinned MMAudio reference on sys.path and returns its directory.

    `path`: a git repository (bare or not) holding REFERENCE_COMMIT, or a plain checkout (used as is; its commit
    cannot be verified, a warning says so). None: clone REFERENCE_REPO into ~/.cache/foley/mmaudio.git once.
    Only the `mmaudio/` package of the pinned commit is extracted (git archive) into a temporary directory.
    """
    if path is None:
        path = Path.home() / ".cache/foley/mmaudio.git"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "clone", "--bare", REFERENCE_REPO, str(path)], check=True)
    path = Path(path)
    try:
        _git("-C", str(path), "rev-parse", "--git-dir")
        is_git = True
    except (subprocess.CalledProcessError, FileNotFoundError):
        is_git = False
    if is_git:
        try:
            _git("-C", str(path), "cat-file", "-e", REFERENCE_COMMIT + "^{commit}")
        except subprocess.CalledProcessError:
            _git("-C", str(path), "fetch", REFERENCE_REPO, REFERENCE_COMMIT)
        dest = Path(tempfile.gettempdir()) / f"foley-mmaudio-{REFERENCE_COMMIT[:7]}"
        dest.mkdir(parents=True, exist_ok=True)
        tar = _git("-C", str(path), "archive", REFERENCE_COMMIT, "mmaudio")
        subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    else:
        dest = path
        if not (dest / "mmaudio").is_dir():
            raise SystemExit(f"{dest}: neither a git repository nor an MMAudio checkout")
        print(f"warning: {dest} is a plain checkout; cannot verify it is commit {REFERENCE_COMMIT}",
              file=sys.stderr)
    sys.path.insert(0, str(dest))
    return dest


@dataclass
class Ctx:
    """What every group gets: where to write, the seed and tiny-config choice, and the reference."""
    out: Path  # fixture root (tests/fixtures/parity)
    seed: int
    config: str  # tiny config choice: "tiny" (default) or "tiny2"; groups map it to their own tiny shapes
    ref_path: Path  # directory on sys.path holding the reference's `mmaudio` package
    manifests_dir: Optional[Path] = None  # models/manifests, or None when manifests were not asked for

    @property
    def reference(self):
        return {"repo": REFERENCE_REPO, "commit": REFERENCE_COMMIT}

    def seed_all(self, offset=0):
        """Seeds torch deterministically for one fixture (`offset` separates fixtures)."""
        import random
        random.seed(self.seed + offset)
        torch.manual_seed(self.seed + offset)

    def save_fixture(self, name, module, weights, inputs, outputs, config, tolerance="module", **extra):
        print(f"  fixture {name} ({module})", flush=True)
        return save_fixture(self.out, name, module, weights, inputs, outputs, config, self.seed, self.reference,
                            tolerance=tolerance, tiny_config=self.config, **extra)

    def save_manifest(self, name, checkpoint, config, state_dict):
        """Writes manifests_dir/<name>.json (call only when manifests_dir is set)."""
        print(f"  manifest {name} ({len(state_dict)} tensors)", flush=True)
        save_manifest(self.manifests_dir / f"{name}.json", checkpoint,
                      dict(config, reference_commit=REFERENCE_COMMIT), state_dict)
