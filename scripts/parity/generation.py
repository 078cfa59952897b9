"""Parity fixtures and manifests of the generation side (issue 4): MM-DiT, flow-matching sampler with CFG, VAE
decoder, BigVGAN (MMAudio's 16 kHz vocoder and the BigVGAN-v2 44.1 kHz architecture), latent/mel normalisation
and the whole latent -> waveform chain. Everything is imported from the pinned reference (see common.py).

Weights are stored as the official checkpoints store them: VAE MPConv weights *before* EDM2 normalisation,
BigVGAN convolutions as weight-norm (g, v) pairs. The Rust loaders apply those transforms.
"""
import math
import types

import torch
from omegaconf import OmegaConf

from parity.common import cast_floats, load_strict

# BigVGAN-v2 44.1 kHz hyper-parameters: config.json of nvidia/bigvgan_v2_44khz_128band_512x (the same file is
# configs/bigvgan_v2_44khz_128band_512x.json in github.com/NVIDIA/BigVGAN). The reference downloads it at run
# time, so it is restated here (architecture fields only).
BIGVGAN_V2_44K = dict(resblock="1", num_mels=128, upsample_rates=[8, 4, 2, 2, 2, 2],
                      upsample_kernel_sizes=[16, 8, 4, 4, 4, 4], upsample_initial_channel=1536,
                      resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                      use_tanh_at_final=False, use_bias_at_final=False, activation="snakebeta",
                      snake_logscale=True)

# Tiny configs. "tiny" is what is committed; "tiny2" gives other shapes (odd lengths, other widths) to show the
# Rust tests read everything from meta.json.
TINY = {
    "tiny": dict(
        dit=dict(latent_dim=8, clip_dim=32, sync_dim=24, text_dim=32, num_heads=2, head_dim=8, depth=3,
                 fused_depth=1, latent_seq_len=20, clip_seq_len=8, sync_seq_len=16, text_seq_len=6),
        dit_v2=dict(latent_dim=6, clip_dim=24, sync_dim=16, text_dim=20, num_heads=3, head_dim=8, depth=3,
                    fused_depth=2, latent_seq_len=17, clip_seq_len=6, sync_seq_len=24, text_seq_len=5),
        resized=dict(latent_seq_len=26, clip_seq_len=10, sync_seq_len=24),
        vae=dict(hidden_dim=8, embed_dim=8, latent_len=12),
        bigvgan=dict(upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4], upsample_initial_channel=16,
                     resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], frames=14),
        bigvgan_v2=dict(upsample_rates=[4, 2], upsample_kernel_sizes=[8, 4], upsample_initial_channel=12,
                        resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], frames=9),
        steps=4, batch=2),
    "tiny2": dict(
        dit=dict(latent_dim=4, clip_dim=20, sync_dim=12, text_dim=28, num_heads=3, head_dim=8, depth=4,
                 fused_depth=2, latent_seq_len=13, clip_seq_len=5, sync_seq_len=8, text_seq_len=7),
        dit_v2=dict(latent_dim=10, clip_dim=16, sync_dim=20, text_dim=12, num_heads=2, head_dim=12, depth=2,
                    fused_depth=1, latent_seq_len=11, clip_seq_len=4, sync_seq_len=16, text_seq_len=3),
        resized=dict(latent_seq_len=19, clip_seq_len=7, sync_seq_len=32),
        vae=dict(hidden_dim=4, embed_dim=4, latent_len=7),
        bigvgan=dict(upsample_rates=[3, 2], upsample_kernel_sizes=[6, 4], upsample_initial_channel=8,
                     resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]], frames=11),
        bigvgan_v2=dict(upsample_rates=[2, 2], upsample_kernel_sizes=[4, 4], upsample_initial_channel=8,
                        resblock_kernel_sizes=[3, 5], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], frames=6),
        steps=3, batch=1),
}

NETWORKS = ["small_16k", "small_44k", "medium_44k", "large_44k", "large_44k_v2"]


def _randomize(module, skip=()):
    """Replaces every parameter and float buffer (except `skip` and fixed filters) with seeded random values:
    the reference zero-initialises adaLN and output layers, which would make the parity test vacuous."""
    with torch.no_grad():
        # only what a checkpoint holds: non-persistent buffers (RoPE tables, t_embed.freqs) stay computed
        for name, p in module.state_dict(keep_vars=True).items():
            if name in skip or name.endswith("filter") or not p.is_floating_point():
                continue
            if name.endswith("norm.weight") or name.endswith("latent_std"):
                p.copy_(1.0 + 0.2 * torch.rand_like(p))
            elif p.ndim >= 2:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def _sd(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _init(module, weights, skip=()):
    """Seeded random weights (weights None: generating a fixture) or the stored ones (re-running a fixture)."""
    if weights is None:
        _randomize(module, skip)
    else:
        load_strict(module, weights)


# ---------------------------------------------------------------------------------------------------------------
# MM-DiT


def _dit_cfg(t, v2):
    c = dict(t["dit_v2" if v2 else "dit"])
    c["hidden_dim"] = c["num_heads"] * c.pop("head_dim")
    c["v2"] = v2
    c["mlp_ratio"] = 4.0
    return c


def _build_dit(cfg, weights=None):
    from mmaudio.model.networks import MMAudio
    kw = {k: v for k, v in cfg.items()}
    net = MMAudio(**kw).eval()
    _init(net, weights)
    return net


def _dit_inputs(cfg, bs, lat_len, clip_len, sync_len):
    return dict(latent=torch.randn(bs, lat_len, cfg["latent_dim"]),
                clip_f=torch.randn(bs, clip_len, cfg["clip_dim"]),
                sync_f=torch.randn(bs, sync_len, cfg["sync_dim"]),
                text_f=torch.randn(bs, cfg["text_seq_len"], cfg["text_dim"]),
                negative_text_f=torch.randn(bs, cfg["text_seq_len"], cfg["text_dim"]),
                t=torch.rand(bs))


def _dit_outputs(net, x, bs):
    cond = net.preprocess_conditions(x["clip_f"], x["sync_f"], x["text_f"])
    flow = net.predict_flow(x["latent"], x["t"], cond)
    empty = net.get_empty_conditions(bs)
    flow_empty = net.predict_flow(x["latent"], x["t"], empty)
    neg = net.get_empty_conditions(bs, negative_text_features=x["negative_text_f"])
    flow_neg = net.predict_flow(x["latent"], x["t"], neg)
    full = net(x["latent"], x["clip_f"], x["sync_f"], x["text_f"], x["t"])
    assert torch.equal(full, flow)
    return dict(flow=flow, flow_empty=flow_empty, flow_negative=flow_neg, cond_clip_f=cond.clip_f,
                cond_sync_f=cond.sync_f, cond_text_f=cond.text_f, cond_clip_f_c=cond.clip_f_c,
                cond_text_f_c=cond.text_f_c, latent_rot=net.latent_rot, clip_rot=net.clip_rot)


@torch.no_grad()
def _dit_fixture(ctx, name, cfg, bs, resize=None, offset=0, pth=False):
    ctx.seed_all(offset)
    net = _build_dit(cfg)
    weights = _sd(net)
    lens = (cfg["latent_seq_len"], cfg["clip_seq_len"], cfg["sync_seq_len"])
    if resize is not None:  # another duration: the reference recomputes RoPE for the new lengths
        lens = (resize["latent_seq_len"], resize["clip_seq_len"], resize["sync_seq_len"])
        net.update_seq_lengths(*lens)
    x = _dit_inputs(cfg, bs, *lens)
    outputs = _dit_outputs(net, x, bs)
    extra = {}
    if pth:
        # as weights/mmaudio_*.pth: a plain state dict; older files also carry the recomputed buffers
        sd = dict(weights, **{"t_embed.freqs": net.t_embed.freqs, "latent_rot": net.latent_rot,
                              "clip_rot": net.clip_rot})
        extra["checkpoint"] = _save_pth(ctx, name, sd, None)
    ctx.save_fixture(name, "mmaudio", weights, x, outputs, cfg,
                     seq_lens=dict(latent=lens[0], clip=lens[1], sync=lens[2]), **extra)


def _sample(net, inputs, steps, cfg_strength):
    """As eval_utils.generate does it; a negative prompt when `inputs` holds negative_text_f."""
    from mmaudio.model.flow_matching import FlowMatching
    x0 = inputs["x0"]
    bs = x0.shape[0]
    fm = FlowMatching(min_sigma=0, inference_mode="euler", num_steps=steps)
    cond = net.preprocess_conditions(inputs["clip_f"], inputs["sync_f"], inputs["text_f"])
    empty = net.get_empty_conditions(bs, negative_text_features=inputs.get("negative_text_f"))
    fn = lambda t, lat: net.ode_wrapper(t, lat, cond, empty, cfg_strength)  # noqa: E731
    x1 = fm.to_data(fn, x0)
    audio_latent = net.unnormalize(x1.clone())
    return dict(x1=x1, unnormalized=audio_latent)


@torch.no_grad()
def _sampler_fixture(ctx, name, cfg, bs, steps, cfg_strength, negative, resize=None, offset=0):
    ctx.seed_all(offset)
    net = _build_dit(cfg)
    weights = _sd(net)
    lens = (cfg["latent_seq_len"], cfg["clip_seq_len"], cfg["sync_seq_len"])
    if resize is not None:
        lens = (resize["latent_seq_len"], resize["clip_seq_len"], resize["sync_seq_len"])
        net.update_seq_lengths(*lens)
    x = _dit_inputs(cfg, bs, *lens)
    x0 = torch.randn(bs, lens[0], cfg["latent_dim"])
    inputs = dict(clip_f=x["clip_f"], sync_f=x["sync_f"], text_f=x["text_f"], x0=x0)
    if negative:
        inputs["negative_text_f"] = x["negative_text_f"]
    outputs = _sample(net, inputs, steps, cfg_strength)
    ctx.save_fixture(name, "sampler", weights, inputs, outputs, cfg,
                     tolerance="sampler", num_steps=steps, cfg_strength=cfg_strength,
                     seq_lens=dict(latent=lens[0], clip=lens[1], sync=lens[2]))


# ---------------------------------------------------------------------------------------------------------------
# VAE, BigVGAN, normalisation, chain


def _save_pth(ctx, name, state_dict, nested_key):
    """Writes <fixture>/checkpoint.pth with torch.save, as the official checkpoints are written."""
    d = ctx.out / name
    d.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().clone().contiguous() for k, v in state_dict.items()}
    torch.save({nested_key: sd} if nested_key else sd, d / "checkpoint.pth")
    return dict(file="checkpoint.pth", nested_key=nested_key)


def _build_vae(mode, hidden_dim, embed_dim, weights=None):
    """As AutoEncoderModule builds it: raw MPConv weights loaded, then remove_weight_norm() (in f32)."""
    from mmaudio.ext.autoencoder.vae import VAE
    vae = VAE(data_dim=80 if mode == "16k" else 128, embed_dim=embed_dim, hidden_dim=hidden_dim).eval()
    _init(vae, weights, skip=("data_mean", "data_std"))
    weights = _sd(vae)  # as the checkpoint stores it: raw MPConv weights
    vae.remove_weight_norm()
    return vae, weights


def _vae_cfg(mode, t):
    return dict(data_dim=80 if mode == "16k" else 128, embed_dim=t["vae"]["embed_dim"],
                hidden_dim=t["vae"]["hidden_dim"])


@torch.no_grad()
def _vae_fixture(ctx, name, mode, t, offset):
    ctx.seed_all(offset)
    vae, weights = _build_vae(mode, t["vae"]["hidden_dim"], t["vae"]["embed_dim"])
    z = torch.randn(t["batch"], t["vae"]["embed_dim"], t["vae"]["latent_len"])
    mel_in = torch.randn(t["batch"], vae.data_mean.shape[1], 2 * t["vae"]["latent_len"] + 1) * 2 - 3
    ctx.save_fixture(name, "vae_decoder", weights, dict(z=z, mel_in=mel_in), _vae_outputs(vae, z, mel_in),
                     _vae_cfg(mode, t))


def _vae_outputs(vae, z, mel_in):
    dec_raw = vae.decode(z, unnormalize=False)
    mel = vae.decode(z)
    posterior = vae.encode(mel_in)
    return dict(mel=mel, mel_normalized=dec_raw, enc_mean=posterior.mean, enc_logvar=posterior.logvar)


def _bigvgan_h(t, key, num_mels, v2):
    c = dict(t[key])
    c.pop("frames")
    h = dict(resblock="1", num_mels=num_mels, activation="snakebeta", snake_logscale=True, **c)
    if v2:
        h.update(use_tanh_at_final=False, use_bias_at_final=False)
    return h


def _build_bigvgan(h, v2, weights=None):
    """As the reference's vocoder wrappers build it: weight-norm (g, v) loaded, then remove_weight_norm()."""
    if v2:
        from mmaudio.ext.bigvgan_v2.bigvgan import BigVGAN as BigVGANv2
        from mmaudio.ext.bigvgan_v2.env import AttrDict
        net = BigVGANv2(AttrDict(dict(h)), use_cuda_kernel=False).eval()
    else:
        from mmaudio.ext.bigvgan.models import BigVGANVocoder
        net = BigVGANVocoder(OmegaConf.create(dict(h))).eval()
    if weights is None:
        _randomize(net)
        with torch.no_grad():  # keep the waveform mostly inside (-1, 1) so tanh/clamp do not hide errors
            net.conv_post.parametrizations.weight.original0.mul_(0.05)
    else:
        load_strict(net, _parametrized_weight_norm(weights))
    weights = _sd(net)  # weight norm (g, v) as parametrizations.weight.original0/1
    net.remove_weight_norm()
    return net, weights


def _legacy_weight_norm(weights):
    """The pre-parametrization spelling (weight_g / weight_v) that older checkpoints carry."""
    out = {}
    for k, v in weights.items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        k = k.replace("parametrizations.weight.original1", "weight_v")
        out[k] = v
    return out


def _parametrized_weight_norm(weights):
    """The inverse of _legacy_weight_norm (the keys the reference's modules hold)."""
    out = {}
    for k, v in weights.items():
        if k.endswith(".weight_g") or k.endswith(".weight_v"):
            k = k[:-len("weight_g")] + ("parametrizations.weight.original0" if k.endswith("_g")
                                         else "parametrizations.weight.original1")
        out[k] = v
    return out


def _bigvgan_h_from_config(cfg, v2):
    """h as the fixture built the vocoder: the stored config minus the two flags the fixtures add for v1."""
    return dict(cfg) if v2 else {k: v for k, v in cfg.items() if k not in ("use_tanh_at_final", "use_bias_at_final")}


@torch.no_grad()
def _bigvgan_fixture(ctx, name, key, num_mels, v2, t, offset, legacy, pth=False):
    ctx.seed_all(offset)
    h = _bigvgan_h(t, key, num_mels, v2)
    net, weights = _build_bigvgan(h, v2)
    if legacy:
        weights = _legacy_weight_norm(weights)
    mel = torch.randn(t["batch"], num_mels, t[key]["frames"])
    wav = net(mel)
    cfg = dict(h, use_tanh_at_final=h.get("use_tanh_at_final", True),
               use_bias_at_final=h.get("use_bias_at_final", True))
    extra = {}
    if pth:  # as best_netG.pt: {'generator': state_dict}
        extra["checkpoint"] = _save_pth(ctx, name, weights, "generator")
    ctx.save_fixture(name, "bigvgan", weights, dict(mel=mel), dict(audio=wav), cfg, v2=v2,
                     weight_norm_keys="weight_g/weight_v" if legacy else "parametrizations", **extra)


@torch.no_grad()
def _norm_fixture(ctx, t, offset):
    from mmaudio.model.networks import MMAudio
    ctx.seed_all(offset)
    cfg = _dit_cfg(t, False)
    net = MMAudio(**cfg)
    _randomize(net)
    x = torch.randn(t["batch"], cfg["latent_seq_len"], cfg["latent_dim"])
    weights = dict(latent_mean=net.latent_mean.data.clone(), latent_std=net.latent_std.data.clone())
    outputs = dict(normalized=net.normalize(x.clone()), unnormalized=net.unnormalize(x.clone()))
    for mode in ("16k", "44k"):
        vae, w = _build_vae(mode, 8, 4)
        m = torch.randn(t["batch"], vae.data_mean.shape[1], 5)
        weights[f"vae_{mode}.data_mean"] = w["data_mean"]
        weights[f"vae_{mode}.data_std"] = w["data_std"]
        inputs_m = m
        outputs[f"mel_{mode}_normalized"] = vae.normalize(inputs_m)
        outputs[f"mel_{mode}_unnormalized"] = vae.unnormalize(inputs_m)
        x_key = f"mel_{mode}"
        outputs[x_key + "_input"] = inputs_m
    inputs = dict(latent=x)
    for mode in ("16k", "44k"):
        inputs[f"mel_{mode}"] = outputs.pop(f"mel_{mode}_input")
    ctx.save_fixture("norm_tiny", "norm", weights, inputs, outputs, dict(latent_dim=cfg["latent_dim"]))


def _chain_outputs(unnormalize, vae, voc, x1):
    z = unnormalize(x1.clone())
    mel = vae.decode(z.transpose(1, 2))
    return dict(mel=mel, audio=voc(mel))


@torch.no_grad()
def _chain_fixture(ctx, t, offset):
    """latent (normalised, as the sampler leaves it) -> unnormalise -> VAE decode -> BigVGAN -> waveform."""
    from mmaudio.model.networks import MMAudio
    ctx.seed_all(offset)
    mode = "16k"
    vcfg = _vae_cfg(mode, t)
    net = MMAudio(**dict(_dit_cfg(t, False), latent_dim=vcfg["embed_dim"]))
    _randomize(net)
    vae, vae_w = _build_vae(mode, vcfg["hidden_dim"], vcfg["embed_dim"])
    h = _bigvgan_h(t, "bigvgan", vcfg["data_dim"], False)
    voc, voc_w = _build_bigvgan(h, False)
    x1 = torch.randn(t["batch"], t["vae"]["latent_len"], vcfg["embed_dim"])
    outputs = _chain_outputs(net.unnormalize, vae, voc, x1)
    weights = dict(latent_mean=net.latent_mean.data.clone(), latent_std=net.latent_std.data.clone())
    weights.update({f"vae.{k}": v for k, v in vae_w.items()})
    weights.update({f"vocoder.{k}": v for k, v in voc_w.items()})
    ctx.save_fixture("chain_tiny_16k", "chain", weights, dict(x1=x1), outputs,
                     dict(vae=vcfg, vocoder=dict(h, use_tanh_at_final=True, use_bias_at_final=True)))


def _generate_outputs(net, vae, voc, inputs, steps, cfg_strength):
    from mmaudio.model.flow_matching import FlowMatching
    x0 = inputs["x0"]
    bs = x0.shape[0]
    fm = FlowMatching(min_sigma=0, inference_mode="euler", num_steps=steps)
    outputs = {}
    for case, clip_f, sync_f, neg in (("full", inputs["clip_f"], inputs["sync_f"], inputs["negative_text_f"]),
                                      ("text_only", net.get_empty_clip_sequence(bs),
                                       net.get_empty_sync_sequence(bs), None)):
        cond = net.preprocess_conditions(clip_f, sync_f, inputs["text_f"])
        empty = net.get_empty_conditions(bs, negative_text_features=neg)
        x1 = fm.to_data(lambda tt, lat: net.ode_wrapper(tt, lat, cond, empty, cfg_strength), x0)
        mel = vae.decode(net.unnormalize(x1.clone()).transpose(1, 2))
        outputs.update({f"{case}_latents": x1, f"{case}_mel": mel, f"{case}_audio": voc(mel)})
    return outputs


@torch.no_grad()
def _generate_fixture(ctx, t, offset):
    """eval_utils.generate after feature extraction: video+text with a negative prompt, and text only (clip and
    sync absent -> learned empty sequences), each through sampler, unnormalise, VAE decode and vocoder."""
    from mmaudio.model.networks import MMAudio
    ctx.seed_all(offset)
    vcfg = _vae_cfg("16k", t)
    dcfg = dict(_dit_cfg(t, False), latent_dim=vcfg["embed_dim"])
    net = MMAudio(**dcfg).eval()
    _randomize(net)
    vae, vae_w = _build_vae("16k", vcfg["hidden_dim"], vcfg["embed_dim"])
    h = _bigvgan_h(t, "bigvgan", vcfg["data_dim"], False)
    voc, voc_w = _build_bigvgan(h, False)
    bs, steps, cfg_strength = t["batch"], t["steps"], 4.5
    x = _dit_inputs(dcfg, bs, dcfg["latent_seq_len"], dcfg["clip_seq_len"], dcfg["sync_seq_len"])
    x0 = torch.randn(bs, dcfg["latent_seq_len"], dcfg["latent_dim"])
    inputs = dict(clip_f=x["clip_f"], sync_f=x["sync_f"], text_f=x["text_f"], negative_text_f=x["negative_text_f"],
                  x0=x0)
    outputs = _generate_outputs(net, vae, voc, inputs, steps, cfg_strength)
    weights = {f"net.{k}": v for k, v in _sd(net).items()}
    weights.update({f"vae.{k}": v for k, v in vae_w.items()})
    weights.update({f"vocoder.{k}": v for k, v in voc_w.items()})
    ctx.save_fixture("generate_tiny_16k", "generate", weights, inputs, outputs,
                     dict(net=dcfg, vae=vcfg, vocoder=dict(h, use_tanh_at_final=True, use_bias_at_final=True)),
                     tolerance="sampler", num_steps=steps, cfg_strength=cfg_strength)


def fixtures(ctx):
    t = TINY[ctx.config]
    bs = t["batch"]
    v1, v2 = _dit_cfg(t, False), _dit_cfg(t, True)
    _dit_fixture(ctx, "mmaudio_tiny", v1, bs, offset=1, pth=True)
    _dit_fixture(ctx, "mmaudio_tiny_v2", v2, bs, offset=2)
    _dit_fixture(ctx, "mmaudio_tiny_resized", v1, bs, resize=t["resized"], offset=3)
    _sampler_fixture(ctx, "sampler_tiny", v1, bs, t["steps"], 4.5, negative=False, offset=4)
    _sampler_fixture(ctx, "sampler_tiny_v2_negative", v2, bs, t["steps"], 3.0, negative=True,
                     resize=t["resized"], offset=5)
    _sampler_fixture(ctx, "sampler_tiny_nocfg", v2, 1, 2, 0.5, negative=False, offset=6)
    _vae_fixture(ctx, "vae_tiny_16k", "16k", t, offset=7)
    _vae_fixture(ctx, "vae_tiny_44k", "44k", t, offset=8)
    _bigvgan_fixture(ctx, "bigvgan_tiny_16k", "bigvgan", 80, False, t, offset=9, legacy=True, pth=True)
    _bigvgan_fixture(ctx, "bigvgan_v2_tiny_44k", "bigvgan_v2", 128, True, t, offset=10, legacy=False)
    _norm_fixture(ctx, t, offset=11)
    _chain_fixture(ctx, t, offset=12)
    _generate_fixture(ctx, t, offset=13)


# ---------------------------------------------------------------------------------------------------------------
# The reference's own bf16 error (gen_parity.py --bf16-errors): each stored fixture re-run from its stored weights
# and inputs as MMAudio's demo.py runs the modules in bf16. runner(fx, dtype) -> (outputs, how)


def _demo_net(net, dtype, lens):
    """demo.py: get_my_mmaudio(...).to(device, dtype) + load_weights, then update_seq_lengths(...), which recomputes
    latent_rot / clip_rot with compute_rope_rotations in f32 after the cast (apply_rope also runs in f32)."""
    net = net.to(dtype)
    net.update_seq_lengths(*lens)
    return net


_NET_HOW = ("MMAudio(**config) loaded from weights.safetensors, .to(bfloat16) (every parameter and buffer, "
            "t_embed.freqs included), then update_seq_lengths(seq_lens) as demo.py does after the cast, so "
            "latent_rot/clip_rot are recomputed in f32 and apply_rope runs in f32 as in the reference's code")


def _vae_vocoder(cfg, fx, dtype):
    vc = cfg["vae"]
    vae, _ = _build_vae("16k" if vc["data_dim"] == 80 else "44k", vc["hidden_dim"], vc["embed_dim"], fx.sub("vae."))
    voc, _ = _build_bigvgan(_bigvgan_h_from_config(cfg["vocoder"], False), False, fx.sub("vocoder."))
    return vae.to(dtype), voc.to(dtype)


def _latent_stats(fx, dtype):
    """MMAudio's latent_mean / latent_std as .to(dtype) leaves them, for its own (un)normalize methods."""
    return types.SimpleNamespace(latent_mean=fx.weights["latent_mean"].to(dtype),
                                 latent_std=fx.weights["latent_std"].to(dtype))


_VAE_HOW = ("VAE loaded from the stored raw MPConv weights, remove_weight_norm() in f32 (as AutoEncoderModule), "
            "then .to(bfloat16) (as FeaturesUtils.to(dtype) in demo.py)")
_VOC_HOW = ("BigVGAN loaded from the stored weight-norm (g, v) weights, remove_weight_norm() in f32 (as the "
            "reference's vocoder wrappers), then .to(bfloat16)")


def _bf16_mmaudio(fx, dtype):
    lens = tuple(fx.meta["seq_lens"][k] for k in ("latent", "clip", "sync"))
    net = _demo_net(_build_dit(fx.meta["config"], fx.weights), dtype, lens)
    x = cast_floats(fx.inputs, dtype)
    return _dit_outputs(net, x, x["latent"].shape[0]), (
        _NET_HOW + "; float inputs (latent, clip_f, sync_f, text_f, negative_text_f, t) cast to bf16")


def _bf16_sampler(fx, dtype):
    lens = tuple(fx.meta["seq_lens"][k] for k in ("latent", "clip", "sync"))
    net = _demo_net(_build_dit(fx.meta["config"], fx.weights), dtype, lens)
    out = _sample(net, cast_floats(fx.inputs, dtype), fx.meta["num_steps"], fx.meta["cfg_strength"])
    return out, (_NET_HOW + "; float inputs (" + ", ".join(sorted(fx.inputs)) + ") cast to bf16; FlowMatching "
                 "euler through net.ode_wrapper as eval_utils.generate (t becomes bf16 there), unnormalize in bf16")


def _bf16_vae(fx, dtype):
    c = fx.meta["config"]
    vae, _ = _build_vae("16k" if c["data_dim"] == 80 else "44k", c["hidden_dim"], c["embed_dim"], fx.weights)
    x = cast_floats(fx.inputs, dtype)
    return _vae_outputs(vae.to(dtype), x["z"], x["mel_in"]), (
        _VAE_HOW + "; z and mel_in cast to bf16; enc_*: the encoder run in bf16 too (demo.py deletes it, "
        "need_vae_encoder=False)")


def _bf16_bigvgan(fx, dtype):
    v2 = fx.meta["v2"]
    net, _ = _build_bigvgan(_bigvgan_h_from_config(fx.meta["config"], v2), v2, fx.weights)
    return dict(audio=net.to(dtype)(fx.inputs["mel"].to(dtype))), (
        _VOC_HOW + ("" if v2 else " (demo.py's 16 kHz vocoder)") + "; mel cast to bf16; "
        + ("BigVGAN-v2 with use_cuda_kernel=False (its CPU path)" if v2 else "BigVGANVocoder"))


def _bf16_norm(fx, dtype):
    from mmaudio.ext.autoencoder.vae import VAE
    from mmaudio.model.networks import MMAudio
    lat, x = _latent_stats(fx, dtype), cast_floats(fx.inputs, dtype)
    out = dict(normalized=MMAudio.normalize(lat, x["latent"].clone()),
               unnormalized=MMAudio.unnormalize(lat, x["latent"].clone()))
    for mode in ("16k", "44k"):
        ns = types.SimpleNamespace(data_mean=fx.weights[f"vae_{mode}.data_mean"].to(dtype),
                                   data_std=fx.weights[f"vae_{mode}.data_std"].to(dtype))
        out[f"mel_{mode}_normalized"] = VAE.normalize(ns, x[f"mel_{mode}"])
        out[f"mel_{mode}_unnormalized"] = VAE.unnormalize(ns, x[f"mel_{mode}"])
    return out, ("MMAudio.normalize/unnormalize and VAE.normalize/unnormalize (the reference's methods) with the "
                 "stored latent_mean/latent_std/data_mean/data_std in bf16 (as .to(bfloat16) leaves them); "
                 "inputs cast to bf16")


def _bf16_chain(fx, dtype):
    from mmaudio.model.networks import MMAudio
    lat = _latent_stats(fx, dtype)
    vae, voc = _vae_vocoder(fx.meta["config"], fx, dtype)
    out = _chain_outputs(lambda x: MMAudio.unnormalize(lat, x), vae, voc, fx.inputs["x1"].to(dtype))
    return out, ("MMAudio.unnormalize with latent_mean/latent_std in bf16, then " + _VAE_HOW + ", then "
                 + _VOC_HOW + "; x1 cast to bf16")


def _bf16_generate(fx, dtype):
    cfg = fx.meta["config"]
    lens = (cfg["net"]["latent_seq_len"], cfg["net"]["clip_seq_len"], cfg["net"]["sync_seq_len"])
    net = _demo_net(_build_dit(cfg["net"], fx.sub("net.")), dtype, lens)
    vae, voc = _vae_vocoder(cfg, fx, dtype)
    out = _generate_outputs(net, vae, voc, cast_floats(fx.inputs, dtype), fx.meta["num_steps"],
                            fx.meta["cfg_strength"])
    return out, (_NET_HOW + "; " + _VAE_HOW + "; " + _VOC_HOW + "; float inputs cast to bf16; eval_utils.generate "
                 "after feature extraction (sampler, unnormalize, decode, vocode), all in bf16")


BF16 = {"mmaudio": _bf16_mmaudio, "sampler": _bf16_sampler, "vae_decoder": _bf16_vae, "bigvgan": _bf16_bigvgan,
        "norm": _bf16_norm, "chain": _bf16_chain, "generate": _bf16_generate}
BF16_SKIP = {}


# ---------------------------------------------------------------------------------------------------------------
# Manifests of the real checkpoints (meta device: no weights needed)


def manifests(ctx):
    from mmaudio.ext.autoencoder.vae import get_my_vae
    from mmaudio.model.networks import get_my_mmaudio
    from mmaudio.ext.bigvgan.models import BigVGANVocoder
    from mmaudio.ext.bigvgan_v2.bigvgan import BigVGAN as BigVGANv2
    from mmaudio.ext.bigvgan_v2.env import AttrDict
    ref = ctx.ref_path / "mmaudio/ext/bigvgan/bigvgan_vocoder.yml"
    with torch.device("meta"):
        for name in NETWORKS:
            net = get_my_mmaudio(name)
            cfg = dict(name=name, latent_dim=net.latent_dim, hidden_dim=net.hidden_dim, num_heads=net.num_heads,
                       depth=len(net.joint_blocks) + len(net.fused_blocks), fused_depth=len(net.fused_blocks),
                       latent_seq_len=net.latent_seq_len, clip_seq_len=net.clip_seq_len,
                       sync_seq_len=net.sync_seq_len, v2=net.v2)
            ctx.save_manifest(f"mmaudio_{name}", f"weights/mmaudio_{name}.pth", cfg, net.state_dict())
        for mode, ckpt in (("16k", "v1-16.pth"), ("44k", "v1-44.pth")):
            vae = get_my_vae(mode)
            ctx.save_manifest(f"vae_{mode}", f"ext_weights/{ckpt}", dict(mode=mode), vae.state_dict())
        h = OmegaConf.load(ref)
        voc = BigVGANVocoder(h)
        ctx.save_manifest("bigvgan_16k", "ext_weights/best_netG.pt ['generator']",
                          dict(OmegaConf.to_container(h), note="weight norm: parametrizations.weight.original0/1"
                               " or legacy weight_g/weight_v"), voc.state_dict())
        voc2 = BigVGANv2(AttrDict(dict(BIGVGAN_V2_44K)), use_cuda_kernel=False)
        ctx.save_manifest("bigvgan_v2_44k", "nvidia/bigvgan_v2_44khz_128band_512x bigvgan_generator.pt ['generator']",
                          dict(BIGVGAN_V2_44K), voc2.state_dict())
