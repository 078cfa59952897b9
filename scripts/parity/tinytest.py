"""The `tiny-test` model bundle (issue 6) and the sequence-length fixture at non-8 s durations.

tiny-test is a complete MMAudio 16 kHz bundle with tiny random weights, written in the official checkpoints'
file formats and key layouts so that `foley generate --model tiny-test` runs the real loading and generation code
on CPU in seconds (its audio is noise):

    models/tiny-test/mmaudio_tiny_16k.pth          MM-DiT, plain state dict (as weights/mmaudio_*.pth)
    models/tiny-test/v1-16.pth                     VAE, plain state dict, raw MPConv weights (as ext_weights/v1-16.pth)
    models/tiny-test/best_netG.pt                  BigVGAN, {'generator': state dict}, weight_g/weight_v (as best_netG.pt)
    models/tiny-test/synchformer_state_dict.pth    Synchformer, vfeat_extractor.* (as synchformer_state_dict.pth)
    models/tiny-test/open_clip_pytorch_model.bin   open_clip CLIP state dict (as apple/DFN5B-CLIP-ViT-H-14-384)
    models/tiny-test.toml                          configs, sha256 and license of each file (read by foley-pipeline)

Every network is the reference's own class (MMAudio's MMAudio / VAE / BigVGANVocoder / Synchformer, open_clip's
CLIP) at a tiny config; only widths and depths shrink. What must stay real does: 80 mel bins and a vocoder hop of
256 (so 16 kHz audio has the clip's duration), CLIP at 384 px with the real 49 408-token vocabulary (the real
tokenizer feeds it), Synchformer at 224 px with 16-frame segments.

The fixture `tests/fixtures/parity/sequence_lengths/` holds the reference's `SequenceConfig` lengths for a list
of durations at 16 and 44.1 kHz, and the RoPE tables (`latent_rot`, `clip_rot`) and flow of the tiny-test network
after `update_seq_lengths` at a non-8 s duration (5.37 s), as `demo.py` does for a clip of that length.
"""
import hashlib
import json
import math
from pathlib import Path

import torch

from parity import encoders, generation

ROOT = Path(__file__).resolve().parent.parent.parent

NET = dict(latent_dim=8, clip_dim=16, sync_dim=32, text_dim=16, num_heads=2, hidden_dim=16, depth=2, fused_depth=1,
           latent_seq_len=250, clip_seq_len=64, sync_seq_len=192, text_seq_len=77, v2=False, mlp_ratio=4.0)
VAE = dict(data_dim=80, embed_dim=8, hidden_dim=8)
VOCODER = dict(resblock="1", num_mels=80, upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
               upsample_initial_channel=16, resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
               activation="snakebeta", snake_logscale=True)
CLIP = dict(embed_dim=16, vision=dict(image_size=384, patch_size=32, width=32, head_width=16, layers=1),
            text=dict(context_length=77, vocab_size=49408, width=16, heads=2, layers=1))
SYNC = dict(embed_dim=32, num_heads=2, depth=1, patch_size=32)

# Every file of every bundle records its license (issue 16); these are foley's own random weights.
LICENSE = dict(spdx="MIT", name="MIT License (foley's own license)", url="https://spdx.org/licenses/MIT.html",
               source="scripts/gen_parity.py --only tinytest (this repository)", commercial="yes")

DURATIONS = [3.0, 3.04, 4.0, 5.37, 7.99, 8.0, 8.01, 10.0, 12.5, 15.2, 19.96, 20.0]


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _save(sd, path, nested=None):
    sd = {k: v.detach().clone().contiguous() for k, v in sd.items()}
    torch.save({nested: sd} if nested else sd, path)


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _toml_table(name, d):
    return f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())


@torch.no_grad()
def write_bundle(ctx, out_dir=ROOT / "models/tiny-test", toml_path=ROOT / "models/tiny-test.toml"):
    from mmaudio.ext.autoencoder.vae import VAE as RefVAE
    from mmaudio.ext.bigvgan.models import BigVGANVocoder
    from mmaudio.model.networks import MMAudio
    from omegaconf import OmegaConf
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx.seed_all(600)
    net = MMAudio(**{k: v for k, v in NET.items()}).eval()
    generation._randomize(net)
    _save(net.state_dict(), out_dir / "mmaudio_tiny_16k.pth")
    vae = RefVAE(**VAE).eval()
    generation._randomize(vae, skip=("data_mean", "data_std"))
    _save(vae.state_dict(), out_dir / "v1-16.pth")
    voc = BigVGANVocoder(OmegaConf.create(dict(VOCODER))).eval()
    generation._randomize(voc)
    voc.conv_post.parametrizations.weight.original0.mul_(0.05)
    _save(generation._legacy_weight_norm(voc.state_dict()), out_dir / "best_netG.pt", nested="generator")
    sync = encoders._synchformer(SYNC)
    encoders._randomize(sync)
    _save(sync.state_dict(), out_dir / "synchformer_state_dict.pth")
    clip = encoders._clip_model(CLIP)
    encoders._randomize(clip)
    _save(clip.state_dict(), out_dir / "open_clip_pytorch_model.bin")

    files = [("network", "mmaudio_tiny_16k.pth"), ("vae", "v1-16.pth"), ("vocoder", "best_netG.pt"),
             ("synchformer", "synchformer_state_dict.pth"), ("clip", "open_clip_pytorch_model.bin")]
    net_cfg = {k: v for k, v in NET.items()}
    lines = [
        "# tiny-test: tiny random weights in the official formats (written by scripts/gen_parity.py --only tinytest,",
        f"# seed {ctx.seed}, reference {ctx.reference['commit'][:7]}). Runs the whole real code path on CPU in",
        "# seconds; its audio is noise.",
        'name = "tiny-test"',
        'mode = "16k"',
        "noise = true",
        'description = "tiny random weights for tests and self-checks (produces noise)"',
        "",
    ]
    note = (f"Commercial use allowed: random weights made by foley's own script (seed {ctx.seed}), holding no trained "
            "parameters of any upstream model; under foley's MIT license.")
    for role, name in files:
        lines.append(_toml_table(f"files.{role}", dict(local=f"tiny-test/{name}", sha256=_sha256(out_dir / name)))
                     + _toml_table(f"files.{role}.license", dict(LICENSE, note=note)))
    lines.append(_toml_table("config.network", net_cfg))
    lines.append(_toml_table("config.vae", VAE))
    lines.append(_toml_table("config.vocoder", dict(VOCODER, use_tanh_at_final=True, use_bias_at_final=True)))
    lines.append(_toml_table("config.clip", encoders._clip_config(CLIP)))
    lines.append(_toml_table("config.synchformer", encoders._sync_config(SYNC)))
    toml_path.write_text("\n".join(lines))
    print(f"  bundle {out_dir} ({sum((out_dir / n).stat().st_size for _, n in files) / 1e6:.1f} MB)", flush=True)
    return net


@torch.no_grad()
def sequence_fixture(ctx, net):
    """Lengths from duration (SequenceConfig) and the tiny-test network's RoPE + flow at 5.37 s."""
    from mmaudio.model.sequence_config import CONFIG_16K, CONFIG_44K
    import copy
    lens = []
    for mode, base in (("16k", CONFIG_16K), ("44k", CONFIG_44K)):
        for d in DURATIONS:
            c = copy.deepcopy(base)
            c.duration = d
            lens.append(dict(mode=mode, duration=d, latent=c.latent_seq_len, clip=c.clip_seq_len,
                             sync=c.sync_seq_len, audio_frames=c.num_audio_frames))
    d = 5.37
    c = copy.deepcopy(CONFIG_16K)
    c.duration = d
    net.update_seq_lengths(c.latent_seq_len, c.clip_seq_len, c.sync_seq_len)
    ctx.seed_all(601)
    x = dict(latent=torch.randn(1, c.latent_seq_len, NET["latent_dim"]),
             clip_f=torch.randn(1, c.clip_seq_len, NET["clip_dim"]),
             sync_f=torch.randn(1, c.sync_seq_len, NET["sync_dim"]),
             text_f=torch.randn(1, NET["text_seq_len"], NET["text_dim"]), t=torch.rand(1))
    cond = net.preprocess_conditions(x["clip_f"], x["sync_f"], x["text_f"])
    flow = net.predict_flow(x["latent"], x["t"], cond)
    ctx.save_fixture("sequence_lengths", "sequence", {}, x,
                     dict(latent_rot=net.latent_rot, clip_rot=net.clip_rot, flow=flow),
                     dict(network="models/tiny-test.toml [config.network]"), lengths=lens,
                     duration=d, seq_lens=dict(latent=c.latent_seq_len, clip=c.clip_seq_len, sync=c.sync_seq_len),
                     note="lengths: mmaudio/model/sequence_config.py at each duration; rot/flow: tiny-test network "
                          "(models/tiny-test/mmaudio_tiny_16k.pth) after update_seq_lengths at 5.37 s")


# gen_parity.py --bf16-errors: nothing here runs a network in a way the bf16 paths are checked against
BF16 = {}
BF16_SKIP = {"sequence": "SequenceConfig lengths and the RoPE positions/flow of the tiny-test network for an f32-only "
                         "check (crates/foley-pipeline/tests/sequence_parity.rs); its weights live in "
                         "models/tiny-test, not in the fixture"}


def fixtures(ctx):
    torch.set_grad_enabled(False)
    net = write_bundle(ctx)
    sequence_fixture(ctx, net)


def manifests(ctx):
    pass  # tiny-test has no real checkpoint
