"""Shared helpers of the parity fixture generator: the on-disk fixture and manifest formats.

A fixture is a directory `<out>/<name>/` holding `weights.safetensors` (the module's state dict exactly as the
official checkpoint stores it, i.e. *before* any load-time transform such as weight-norm folding),
`inputs.safetensors`, `outputs.safetensors` and `meta.json`:
    {"module": <kind the Rust test dispatches on>, "config": {...}, "seed": N,
     "reference": {"repo": ..., "commit": ...}, "tolerance": "module" | "sampler", ...extra}
A manifest is `models/manifests/<checkpoint>.json`: {"checkpoint": ..., "config": {...},
"tensors": {key: {"shape": [...], "dtype": "F32"}}}.

`bf16_errors` (gen_parity.py --bf16-errors) re-runs the reference in bf16 on the *stored* fixtures and adds
    "reference_bf16": {"max_abs_err": {output: float}, "rms_err": {output: float}, "scale": {output: max(1, max |f32 output|)},
                       "f32_rerun_max_abs_err": {output: float}, "torch": version, "how": "..."}
to their meta.json (nothing else of the fixture is rewritten). Groups expose `BF16 = {module kind: runner}`
(runner(fx, dtype) -> (outputs, how): the fixture's float outputs recomputed from the stored weights and inputs
with everything in `dtype`, as MMAudio's demo.py runs it) and `BF16_SKIP = {module kind: why}`.
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
from safetensors.torch import load_file, save_file

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
    write_meta(d, meta)
    return d


def write_meta(d, meta):
    (Path(d) / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


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


# ---------------------------------------------------------------------------------------------------------------
# The reference's own bf16 error on the stored fixtures (gen_parity.py --bf16-errors)


@dataclass
class Stored:
    """One fixture as the repository holds it (what the Rust tests read)."""
    dir: Path
    meta: dict
    weights: dict
    inputs: dict
    outputs: dict

    @property
    def name(self):
        return self.dir.name

    def sub(self, prefix):
        """The stored weights under `prefix` (e.g. "vae."), prefix stripped."""
        return {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}


def load_stored(d):
    d = Path(d)
    st = lambda f: load_file(str(d / f)) if (d / f).exists() else {}  # noqa: E731
    return Stored(d, json.loads((d / "meta.json").read_text()), st("weights.safetensors"), st("inputs.safetensors"),
                  st("outputs.safetensors"))


def cast_floats(tensors, dtype):
    """Float tensors to `dtype` (as the reference's `.to(device, dtype)` calls do); integers unchanged."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}


def load_strict(module, weights, allow_missing=None):
    """Loads stored weights into a freshly built reference module. `allow_missing(key)`: keys the fixture does not
    hold on purpose (e.g. CLIP's text tower in the vision fixture); every other key must match exactly."""
    if allow_missing is None:
        module.load_state_dict(weights, strict=True)
        return module
    missing, unexpected = module.load_state_dict(weights, strict=False)
    bad = [k for k in missing if not allow_missing(k)]
    assert not bad and not unexpected, f"missing {bad[:5]}, unexpected {unexpected[:5]}"
    return module


def _max_abs(a, b):
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def _rms(a, b):
    return float((a.float() - b.float()).pow(2).mean().sqrt()) if a.numel() else 0.0


def bf16_errors(root, runners, skips, only=None, partial=False):
    """For every fixture under `root` whose module kind has a runner: re-runs it from the stored weights and inputs
    in f32 (a check that the reconstruction is the stored one) and in bf16, and writes the bf16 max-abs errors
    against the stored f32 outputs into its meta.json (key "reference_bf16"). Returns {fixture: why} of the
    fixtures skipped. `only`: fixture names; `partial`: only some groups' runners/skips were given."""
    skipped = {}
    dirs = sorted(p for p in Path(root).iterdir() if (p / "meta.json").is_file())
    for d in dirs:
        if only and d.name not in only:
            continue
        fx = load_stored(d)
        kind = fx.meta["module"]
        runner = runners.get(kind)
        if runner is None:
            if partial and not any(k.split(":")[0] == kind for k in skips):
                continue  # a module kind of a group not selected (--only)
            skipped[d.name] = skips.get(kind, f"no bf16 runner for module kind {kind!r}")
            print(f"  {d.name} ({kind}): skipped: {skipped[d.name]}", flush=True)
            continue
        with torch.no_grad():
            res = runner(fx, torch.bfloat16)
            if res is None:  # the runner declines this fixture (e.g. a preprocessing-only one without weights)
                skipped[d.name] = skips.get(f"{kind}:no-weights", "runner declined")
                print(f"  {d.name} ({kind}): skipped: {skipped[d.name]}", flush=True)
                continue
            bf16, how = res
            f32, _ = runner(fx, torch.float32)
        assert set(f32) == set(bf16) and set(bf16) <= set(fx.outputs), (sorted(bf16), sorted(fx.outputs))
        err, rms, scale, rerun = {}, {}, {}, {}
        for k in sorted(bf16):
            want = fx.outputs[k]
            assert bf16[k].shape == want.shape and f32[k].shape == want.shape, (k, bf16[k].shape, want.shape)
            assert f32[k].dtype == torch.float32, (k, f32[k].dtype)
            rerun[k] = _max_abs(f32[k], want)
            err[k] = _max_abs(bf16[k], want)
            rms[k] = _rms(bf16[k], want)
            scale[k] = max(1.0, float(want.float().abs().max()))
            # the f32 re-run must reproduce the stored outputs (else the numbers would describe other fixtures)
            tol = 1e-3 if fx.meta.get("tolerance") == "sampler" else 1e-4
            assert rerun[k] <= tol * scale[k], f"{d.name} {k}: f32 re-run differs from the stored output by {rerun[k]}"
            print(f"  {d.name} {k}: bf16 max_abs_err {err[k]:.3e} scale {scale[k]:.3g} "
                  f"(rel {err[k] / scale[k]:.2e}; f32 re-run {rerun[k]:.1e})", flush=True)
        fx.meta["reference_bf16"] = {
            "max_abs_err": err, "rms_err": rms, "scale": scale, "f32_rerun_max_abs_err": rerun,
            "torch": torch.__version__,
            "how": how + f"; CPU, {torch.get_num_threads()} thread(s); max|bf16 output (cast to f32) - stored f32 "
                         "output| over all elements",
        }
        write_meta(d, fx.meta)
    return skipped
