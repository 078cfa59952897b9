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
from pathlib import Path

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
