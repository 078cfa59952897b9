"""Parity fixtures and manifests of the conditioning side (issue 5): the CLIP BPE tokenizer (open_clip), the CLIP
DFN5B ViT-H/14-384 vision and text towers as MMAudio patches and calls them, MMAudio's Synchformer visual encoder
and the frame preprocessing of MMAudio's `load_video`.

Everything runs through the reference itself: `FeaturesUtils.encode_video_with_clip / encode_video_with_sync /
encode_text` (mmaudio/model/utils/features_utils.py) are called unbound on a namespace holding tiny random models,
`patch_clip` is MMAudio's, and the preprocessing is `eval_utils.load_video` with its frame reader replaced by the
frames we feed (PyAV is not needed: `av` is stubbed because only the transforms are exercised).

Also writes the data files the Rust tokenizer needs (models/clip/): the merges of open_clip's
bpe_simple_vocab_16e6.txt.gz (the part the tokenizer uses) and the HTML5 entity table used by `html.unescape`
and ftfy's `unescape_html`.
"""
import gzip
import html.entities
import json
import random
import sys
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from parity.common import load_strict

ROOT = Path(__file__).resolve().parent.parent.parent

# Tiny shapes. The reference asserts 384x384 CLIP frames and 224x224 Synchformer frames, so only widths, depths,
# patch sizes and lengths shrink. Patch 28 at 384 px leaves a 20-pixel remainder, as patch 14 does (27 * 14 = 378).
TINY = {
    "tiny": dict(
        clip=dict(embed_dim=16, vision=dict(image_size=384, patch_size=28, width=32, head_width=8, layers=2),
                  text=dict(context_length=77, vocab_size=1000, width=24, heads=3, layers=2)),
        clip_frames=2, text_batch=3,
        sync=dict(embed_dim=32, num_heads=4, depth=2, patch_size=16), sync_frames=24,
        video=dict(height=48, width=64, clip_frames=8, sync_frames=25, keep=1),
        down=dict(height=384, width=450)),  # 384: the CLIP resize skips its vertical pass
    "tiny2": dict(
        clip=dict(embed_dim=12, vision=dict(image_size=384, patch_size=32, width=24, head_width=12, layers=3),
                  text=dict(context_length=77, vocab_size=700, width=16, heads=2, layers=3)),
        clip_frames=3, text_batch=2,
        sync=dict(embed_dim=24, num_heads=3, depth=1, patch_size=32), sync_frames=32,
        video=dict(height=57, width=41, clip_frames=7, sync_frames=17, keep=1),
        down=dict(height=301, width=233)),
}

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # features_utils.py: FeaturesUtils.clip_preprocess
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _randomize(module):
    """Seeded random values for every float parameter: the reference zero/one-initialises norms, the
    Synchformer's qkv and patch embedding, which would make parity vacuous."""
    import math
    norms = {n + ".weight" for n, m in module.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in norms:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.ndim >= 2:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
            else:
                p.copy_(0.3 * torch.randn_like(p))


def _init(module, weights, allow_missing=None):
    """Seeded random weights (weights None: generating a fixture) or the stored ones (re-running a fixture)."""
    if weights is None:
        _randomize(module)
    else:
        load_strict(module, weights, allow_missing)
    return module


def _not_visual(key):
    return not key.startswith("visual.")


def _stub_missing(name, **attrs):
    """Stubs a module the imported reference files name but the exercised code never calls (PyAV for
    eval_utils' video reader, librosa for the mel converter next to FeaturesUtils)."""
    try:
        __import__(name)
    except ImportError:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        for k, v in attrs.items():
            setattr(sys.modules[name], k, v)


def _features_utils():
    _stub_missing("librosa.filters", mel=None)
    from mmaudio.model.utils import features_utils
    return features_utils


def _sd(module, prefix=""):
    return {prefix + k: v.clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------------
# CLIP


def _clip_model(cfg, device=None):
    """open_clip CLIP of the given config with QuickGELU, as DFN5B's open_clip_config.json sets it."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    return CLIP(embed_dim=cfg["embed_dim"], vision_cfg=CLIPVisionCfg(**cfg["vision"]),
                text_cfg=CLIPTextCfg(**cfg["text"]), quick_gelu=True).eval()


def _clip_ns(model):
    from torchvision.transforms import Normalize
    patch_clip = _features_utils().patch_clip
    return types.SimpleNamespace(clip_model=patch_clip(model),
                                 clip_preprocess=Normalize(mean=CLIP_MEAN, std=CLIP_STD))


def _clip_config(c):
    v, t = c["vision"], c["text"]
    return dict(embed_dim=c["embed_dim"], image_size=v["image_size"], patch_size=v["patch_size"],
                vision_width=v["width"], vision_heads=v["width"] // v["head_width"], vision_layers=v["layers"],
                context_length=t["context_length"], vocab_size=t["vocab_size"], text_width=t["width"],
                text_heads=t["heads"], text_layers=t["layers"], mlp_ratio=4.0, quick_gelu=True)


def _clip_cfg(config):
    """The inverse of _clip_config (a fixture's meta.json config -> _clip_model's argument)."""
    c = config
    cfg = dict(embed_dim=c["embed_dim"],
               vision=dict(image_size=c["image_size"], patch_size=c["patch_size"], width=c["vision_width"],
                           head_width=c["vision_width"] // c["vision_heads"], layers=c["vision_layers"]),
               text=dict(context_length=c["context_length"], vocab_size=c["vocab_size"], width=c["text_width"],
                         heads=c["text_heads"], layers=c["text_layers"]))
    assert _clip_config(cfg) == config, (cfg, config)
    return cfg


def _frames_u8(*shape):
    return torch.randint(0, 256, shape, dtype=torch.uint8)


def _to_float(u8):
    """v2.ToDtype(torch.float32, scale=True), as load_video's transforms apply it."""
    from torchvision.transforms import v2
    return v2.ToDtype(torch.float32, scale=True)(u8)


def _encode_clip(ns, frames_u8, dtype=torch.float32):
    """load_video's ToDtype(float32, scale) in f32, then eval_utils.generate's clip_video.to(dtype)."""
    return _features_utils().FeaturesUtils.encode_video_with_clip(ns, _to_float(frames_u8).to(dtype))


def clip_vision_fixture(ctx, t):
    ctx.seed_all(11)
    model = _clip_model(t["clip"])
    _randomize(model)
    ns = _clip_ns(model)
    frames = _frames_u8(1, t["clip_frames"], 3, 384, 384)  # (B, T, C, H, W) after load_video's resize
    feats = _encode_clip(ns, frames)
    weights = {k: v for k, v in _sd(model).items() if k.startswith("visual.")}
    ctx.save_fixture("clip_vision", "clip_vision", weights, {"frames_u8": frames}, {"features": feats},
                     _clip_config(t["clip"]),
                     note="frames_u8/255 -> FeaturesUtils.encode_video_with_clip (CLIP normalise, "
                          "encode_image(normalize=True))")


def _clip_text_outputs(model, ns, tokens):
    with torch.inference_mode():  # FeaturesUtils.encode_text = tokenizer + this call
        feats = ns.clip_model.encode_text(tokens, normalize=True)
        # open_clip's own (unpatched) encode_text: end-of-text pooling + text_projection, not used by MMAudio
        from open_clip.model import CLIP
        pooled = CLIP.encode_text(model, tokens, normalize=True)
    return {"features": feats, "pooled": pooled}


def clip_text_fixture(ctx, t):
    ctx.seed_all(12)
    model = _clip_model(t["clip"])
    _randomize(model)
    ns = _clip_ns(model)
    c = t["clip"]["text"]
    b, n, vocab = t["text_batch"], c["context_length"], c["vocab_size"]
    tokens = torch.zeros(b, n, dtype=torch.long)
    for i in range(b):  # sot, a random body, eot, zero padding (as the tokenizer lays it out)
        length = [n, 2, 1 + 7 * (i + 1)][i % 3]
        tokens[i, :length] = torch.randint(1, vocab - 2, (length,))
        tokens[i, 0], tokens[i, length - 1] = vocab - 2, vocab - 1
    weights = {k: v for k, v in _sd(model).items() if not k.startswith("visual.")}
    ctx.save_fixture("clip_text", "clip_text", weights, {"tokens": tokens}, _clip_text_outputs(model, ns, tokens),
                     _clip_config(t["clip"]), note="patch_clip(model).encode_text(tokens, normalize=True)")


def _prompts(rng):
    """>= 200 varied prompts: plain, unicode, punctuation, emoji, html entities, ftfy-relevant characters,
    whitespace oddities, the 200-char limit, long prompts that hit the 77-token truncation, empty."""
    base = [
        "", " ", "   \t\n  ", "a dog barking", "A Dog Barking", "DOG BARKING LOUDLY!!!", "dog's bark, cat's meow",
        "it's raining; we're inside, they've left, I'm here, you'll see, he'd go", "rock'n'roll drums",
        "footsteps on gravel", "footsteps on gravel.", "footsteps   on\tgravel\n", "glass shatters — then silence",
        "waves crash… gulls cry", "“quoted” and ‘single’ quotes", "don’t stop", "ＬＯＵＤ　ＮＯＩＳＥＳ",
        "ﬁre cracking, ﬂames", "Ĳssel river", "café ambience", "naïve piano", "Straße traffic", "crème brûlée torch",
        "日本の夏祭り", "雷雨と風", "비 오는 소리", "дождь по крыше", "ΣΊΣΥΦΟΣ rolling a boulder", "ὈΔΥΣΣΕΎΣ",
        "صوت المطر", "שלום עולם", "हवा की आवाज़", "ยามเช้า", "🐶 barking 🐕", "🔥🔥🔥", "👨‍👩‍👧 family laughing",
        "🏳️‍🌈 parade", "👍🏽 applause", "❤️ heartbeat", "✔ done", "☕ coffee machine", "music ♪♫ notes",
        "&amp; &lt;tag&gt; &quot;hi&quot; &#39;x&#39; &#x263A; &nbsp;space", "Tom &amp; Jerry chase",
        "&amp;amp; double escaped", "&copy 2024 &reg", "a &notit; b", "P&EACUTE;REZ", "&ntilde; &Ntilde; &NTILDE;",
        "<b>bold</b> &amp; text", "x < y &amp; z", "&#128054; dog", "&#0; &#128; &#x110000;", "&hellip;",
        "100 dB explosion at 3:45pm", "2x speed, 1.5kHz tone, 44100Hz", "$100 £50 €20 ¥1000", "#hashtag @mention",
        "email me at a.b@c.com", "https://example.com/sound?id=42&x=1", "C:\\path\\to\\file.wav",
        "(parentheses) [brackets] {braces}", "a-b_c/d\\e|f", "!!!???...,,,;;;:::", "'''\"\"\"```", "~`^*+=<>",
        "tab\there", "line1\nline2\r\nline3\rline4", "nbsp\u00a0here", "zero\u200bwidth", "soft\u00adhyphen",
        "ctrl\x01\x02\x7fchars", "bell\x07", "\ufeffbom start", "ansi \x1b[31mred\x1b[0m text",
        "combining e\u0301 vs é", "ANGSTROM \u212b", "ligature \ufb03", "half ｶﾀｶﾅ", "ideographic\u3000space",
        "<start_of_text> literal", "<end_of_text>", "<|startoftext|>", "CAPS And lower MiXeD", "İstanbul ıI",
        "ǅemal", "ﬅ", "x²+y³", "½ cup ¾ tsp", "①②③", "Ⅻ o'clock", "٣ arabic digit", "१२३", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "𝒥ohn", "🀄 mahjong tiles clacking", "a" * 200, "ab " * 66 + "ab", "ünïcödé " * 25,
        "word " * 40, "🐶" * 100, "dog, " * 50, "the quick brown fox jumps over the lazy dog " * 4,
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z" * 3, "1234567890" * 20,
    ]
    words = ["rain", "thunder", "footsteps", "engine", "crowd", "applause", "whisper", "bird", "chirping",
             "crackling", "fire", "metal", "clang", "door", "creak", "wind", "howling", "ocean", "waves", "car",
             "horn", "typing", "keyboard", "clock", "ticking", "ASMR", "tapping", "crinkling", "paper", "bubble",
             "wrap", "water", "dripping", "sizzling", "pan", "guitar", "strum", "drum", "beat", "synth", "pad"]
    extras = ["!", "?", ",", ".", "...", " - ", "'s", "’", "🎵", "🌧️", "é", "ß", "中", "&amp;", "(", ")", "\"",
              "  ", "\t", "42", "3.14", "#1", "Ñ", "ё", "ǆ"]
    out = list(base)
    while len(out) < 240:
        n = rng.randint(1, 30)
        parts = []
        for _ in range(n):
            w = rng.choice(words)
            r = rng.random()
            if r < 0.15:
                w = w.upper()
            elif r < 0.25:
                w = w.capitalize()
            if rng.random() < 0.3:
                w += rng.choice(extras)
            parts.append(w)
        s = " ".join(parts)
        if rng.random() < 0.2:
            s = s[:200]
        out.append(s)
    return out


def tokenizer_fixture(ctx, t):
    import open_clip
    ctx.seed_all(13)
    # MMAudio: open_clip.get_tokenizer('ViT-H-14-378-quickgelu')  # same as 'ViT-H-14'
    tok = open_clip.get_tokenizer("ViT-H-14-378-quickgelu")
    prompts = _prompts(random.Random(ctx.seed + 13))
    ids = tok(prompts)
    ctx.save_fixture("clip_tokenizer", "clip_tokenizer", {}, {}, {"ids": ids.to(torch.int64)},
                     {"context_length": int(ids.shape[1])}, prompts=prompts,
                     tokenizer="open_clip.get_tokenizer('ViT-H-14-378-quickgelu')")


# ---------------------------------------------------------------------------------------------------------------
# Synchformer


def _synchformer(s):
    """MMAudio's Synchformer() with the MotionFormer yaml config shrunk to the tiny shape (the yaml is loaded in
    MotionFormer.__init__, so its loader is wrapped for the duration of the construction)."""
    from mmaudio.ext.synchformer import motionformer
    from mmaudio.ext.synchformer.synchformer import Synchformer
    orig = motionformer.OmegaConf.load

    def load(path):
        cfg = orig(path)
        if s is not None:
            cfg.VIT.EMBED_DIM, cfg.VIT.NUM_HEADS = s["embed_dim"], s["num_heads"]
            cfg.VIT.DEPTH, cfg.VIT.PATCH_SIZE = s["depth"], s["patch_size"]
        return cfg

    motionformer.OmegaConf.load = load
    try:
        return Synchformer().eval()
    finally:
        motionformer.OmegaConf.load = orig


def _sync_config(s):
    return dict(embed_dim=s["embed_dim"], num_heads=s["num_heads"], depth=s["depth"], patch_size=s["patch_size"],
                image_size=224, temporal_patch=2, frames_per_segment=16, segment_stride=8, mlp_ratio=4,
                layer_norm_eps=1e-6)


def _sync_cfg(config):
    """The inverse of _sync_config."""
    s = {k: config[k] for k in ("embed_dim", "num_heads", "depth", "patch_size")}
    assert _sync_config(s) == config, (s, config)
    return s


def _sync_norm(u8):
    from torchvision.transforms import v2
    return v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])(_to_float(u8))


def _encode_sync(model, frames_u8, dtype=torch.float32):
    """load_video's ToDtype + Normalize in f32, then eval_utils.generate's sync_video.to(dtype)."""
    return _features_utils().FeaturesUtils.encode_video_with_sync(types.SimpleNamespace(synchformer=model),
                                                                  _sync_norm(frames_u8).to(dtype))


def synchformer_fixture(ctx, t):
    ctx.seed_all(21)
    model = _synchformer(t["sync"])
    _randomize(model)
    frames = _frames_u8(1, t["sync_frames"], 3, 224, 224)
    feats = _encode_sync(model, frames)
    d = ctx.save_fixture("synchformer", "synchformer", _sd(model), {"frames_u8": frames}, {"features": feats},
                         _sync_config(t["sync"]), checkpoint="checkpoint.pth",
                         note="frames_u8 -> ToDtype(scale) + Normalize(0.5, 0.5) -> "
                              "FeaturesUtils.encode_video_with_sync")
    # A torch.save'd state dict shaped like synchformer_state_dict.pth: the visual encoder plus entries of the
    # other Synchformer parts, which MMAudio's load_state_dict drops (so must our loader).
    extra = {"afeat_extractor.patch_embed.proj.weight": torch.randn(4, 1, 2, 2), "transformer.pos_emb": torch.randn(3),
             "vproj.weight": torch.randn(2, 2)}
    torch.save(dict(_sd(model), **extra), d / "checkpoint.pth")


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing: eval_utils.load_video with our frames


def _load_video(clip_chunk, sync_chunk):
    """Runs eval_utils.load_video on given (T, H, W, 3) uint8 chunks (its PyAV frame reader replaced)."""
    _stub_missing("av", AudioFrame=object)
    _features_utils()
    from mmaudio import eval_utils
    orig = eval_utils.read_frames
    eval_utils.read_frames = lambda *a, **k: ([clip_chunk, sync_chunk], [], Fraction(25))
    try:
        dur = min(clip_chunk.shape[0] / 8.0, sync_chunk.shape[0] / 25.0)
        return eval_utils.load_video("unused.mp4", dur, load_all_frames=False)
    finally:
        eval_utils.read_frames = orig


def _to_u8(x):
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def _preprocess_models(clip_cfg, sync_cfg, weights=None, dtype=torch.float32):
    """The CLIP (vision tower used) and Synchformer of a preprocess fixture, as FeaturesUtils holds them."""
    model = _init(_clip_model(clip_cfg), None if weights is None else
                  {k[5:]: v for k, v in weights.items() if k.startswith("clip.")}, _not_visual)
    sync = _init(_synchformer(sync_cfg), None if weights is None else
                 {k[12:]: v for k, v in weights.items() if k.startswith("synchformer.")})
    ns = _clip_ns(model.to(dtype))
    ns.synchformer = sync.to(dtype)
    return model, sync, ns


def _preprocess_features(ns, info, dtype=torch.float32):
    """load_video's f32 frames, cast as eval_utils.generate does, through FeaturesUtils."""
    FeaturesUtils = _features_utils().FeaturesUtils
    return {"clip_features": FeaturesUtils.encode_video_with_clip(ns, info.clip_frames[None].to(dtype)),
            "sync_features": FeaturesUtils.encode_video_with_sync(ns, info.sync_frames[None].to(dtype))}


def preprocess_fixture(ctx, t, name, h, w, n_clip, n_sync, keep, with_models):
    _features_utils()
    ctx.seed_all(31 if with_models else 32)
    clip_chunk = np.random.RandomState(ctx.seed + h).randint(0, 256, (n_clip, h, w, 3)).astype(np.uint8)
    sync_chunk = np.random.RandomState(ctx.seed + w).randint(0, 256, (n_sync, h, w, 3)).astype(np.uint8)
    info = _load_video(clip_chunk, sync_chunk)
    # load_video keeps the first frames that fit the shorter stream's duration
    n_clip, n_sync = info.clip_frames.shape[0], info.sync_frames.shape[0]
    assert n_clip >= keep and n_sync >= keep
    # planar [T, 3, H, W] as foley-media hands them out
    if not with_models:  # only the compared frames are needed
        n_clip = n_sync = keep
    inputs = {"clip_chunk": torch.from_numpy(clip_chunk[:n_clip]).permute(0, 3, 1, 2),
              "sync_chunk": torch.from_numpy(sync_chunk[:n_sync]).permute(0, 3, 1, 2)}
    # load_video's outputs are uint8 resize results scaled to float: recover the uint8 images exactly
    outputs = {"clip_u8": _to_u8(info.clip_frames[:keep]), "sync_u8": _to_u8(info.sync_frames[:keep] * 0.5 + 0.5)}
    weights, config = {}, dict(clip_size=384, sync_size=224)
    if with_models:
        model, sync, ns = _preprocess_models(t["clip"], t["sync"])
        outputs.update(_preprocess_features(ns, info))
        weights = {"clip." + k: v for k, v in _sd(model).items() if k.startswith("visual.")}
        weights.update(_sd(sync, "synchformer."))
        config.update(clip=_clip_config(t["clip"]), sync=_sync_config(t["sync"]))
    ctx.save_fixture(name, "preprocess", weights, inputs, outputs, config,
                     note="eval_utils.load_video transforms on these frames (uint8 bicubic antialiased resize); "
                          "features through FeaturesUtils with the tiny models when weights are present")


# ---------------------------------------------------------------------------------------------------------------
# The reference's own bf16 error (gen_parity.py --bf16-errors): runner(fx, dtype) -> (outputs, how)

_FEAT_HOW = ("as demo.py's FeaturesUtils.to(bfloat16): the module loaded in f32 from weights.safetensors, then "
             ".to(bfloat16) (every parameter and buffer)")


def _bf16_clip_vision(fx, dtype):
    model = _init(_clip_model(_clip_cfg(fx.meta["config"])), fx.weights, _not_visual)
    feats = _encode_clip(_clip_ns(model.to(dtype)), fx.inputs["frames_u8"], dtype)
    return {"features": feats}, (
        "open_clip CLIP " + _FEAT_HOW + ", patch_clip; frames_u8 -> ToDtype(float32, scale) in f32 as load_video, "
        "cast to bf16 as eval_utils.generate, then FeaturesUtils.encode_video_with_clip (Normalize in bf16)")


def _bf16_clip_text(fx, dtype):
    model = _init(_clip_model(_clip_cfg(fx.meta["config"])), fx.weights, lambda k: k.startswith("visual."))
    out = _clip_text_outputs(model, _clip_ns(model.to(dtype)), fx.inputs["tokens"])
    return out, ("open_clip CLIP " + _FEAT_HOW + " (text tower weights; attn_mask buffer in bf16), patch_clip; "
                 "tokens (int64) unchanged; features: patched encode_text(normalize=True), pooled: open_clip's "
                 "CLIP.encode_text")


def _bf16_synchformer(fx, dtype):
    model = _init(_synchformer(_sync_cfg(fx.meta["config"])), fx.weights)
    feats = _encode_sync(model.to(dtype), fx.inputs["frames_u8"], dtype)
    return {"features": feats}, (
        "MMAudio's Synchformer " + _FEAT_HOW + "; frames_u8 -> ToDtype(scale) + Normalize(0.5, 0.5) in f32 as "
        "load_video, cast to bf16 as eval_utils.generate, then FeaturesUtils.encode_video_with_sync")


def _bf16_preprocess(fx, dtype):
    if not fx.weights:
        return None
    cfg = fx.meta["config"]
    chunks = [fx.inputs[k].permute(0, 2, 3, 1).contiguous().numpy() for k in ("clip_chunk", "sync_chunk")]
    info = _load_video(*chunks)
    # the stored frames are what load_video made of these chunks (checked on the exact uint8 outputs)
    keep = fx.outputs["clip_u8"].shape[0]
    assert torch.equal(_to_u8(info.clip_frames[:keep]), fx.outputs["clip_u8"])
    assert torch.equal(_to_u8(info.sync_frames[:keep] * 0.5 + 0.5), fx.outputs["sync_u8"])
    _, _, ns = _preprocess_models(_clip_cfg(cfg["clip"]), _sync_cfg(cfg["sync"]), fx.weights, dtype)
    return _preprocess_features(ns, info, dtype), (
        "eval_utils.load_video on the stored chunks (its transforms in f32, as the reference), frames cast to bf16 "
        "as eval_utils.generate; CLIP and Synchformer " + _FEAT_HOW + "; clip_u8/sync_u8 are uint8 resize "
        "results (no bf16 path) and are not listed")


BF16 = {"clip_vision": _bf16_clip_vision, "clip_text": _bf16_clip_text, "synchformer": _bf16_synchformer,
        "preprocess": _bf16_preprocess}
BF16_SKIP = {"clip_tokenizer": "token ids only (integers from the BPE tokenizer): no float computation",
             "preprocess:no-weights": "uint8 resize outputs only (compared exactly; no model, no bf16 path)"}


# ---------------------------------------------------------------------------------------------------------------
# Data the Rust tokenizer ships with


def write_clip_data(out_dir=ROOT / "models/clip"):
    import open_clip.tokenizer as ot
    out_dir.mkdir(parents=True, exist_ok=True)
    merges = gzip.open(ot.default_bpe()).read().decode("utf-8").split("\n")
    used = merges[: 49152 - 256 - 2 + 1]  # header line + the merges SimpleTokenizer uses
    (out_dir / "bpe_simple_vocab_16e6.merges.txt").write_text("\n".join(used) + "\n", encoding="utf-8")
    (out_dir / "html5_entities.json").write_text(
        json.dumps(dict(sorted(html.entities.html5.items())), ensure_ascii=False, indent=0) + "\n",
        encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------


def fixtures(ctx):
    t = TINY[ctx.config]
    torch.set_grad_enabled(False)
    write_clip_data()
    tokenizer_fixture(ctx, t)
    clip_text_fixture(ctx, t)
    clip_vision_fixture(ctx, t)
    synchformer_fixture(ctx, t)
    v, d = t["video"], t["down"]
    preprocess_fixture(ctx, t, "preprocess_video", v["height"], v["width"], v["clip_frames"], v["sync_frames"],
                       v["keep"], with_models=True)
    preprocess_fixture(ctx, t, "preprocess_down", d["height"], d["width"], 1, 4, 1, with_models=False)


# DFN5B-CLIP-ViT-H-14-384's open_clip_config.json (Hugging Face apple/DFN5B-CLIP-ViT-H-14-384) gives
# embed_dim 1024, quick_gelu true, vision image_size 384 / layers 32 / width 1280 / head_width 80 / patch 14,
# text context 77 / vocab 49408 / width 1024 / heads 16 / layers 24 -- open_clip's ViT-H-14-378-quickgelu with
# image_size forced to 384, which is how MMAudio's tokenizer choice names it. The checkpoint
# (open_clip_model.safetensors / open_clip_pytorch_model.bin) is CLIP.state_dict() of that model.
CLIP_REAL = dict(embed_dim=1024, vision=dict(image_size=384, patch_size=14, width=1280, head_width=80, layers=32),
                 text=dict(context_length=77, vocab_size=49408, width=1024, heads=16, layers=24))


def manifests(ctx):
    import open_clip
    with torch.device("meta"):
        model = open_clip.create_model("ViT-H-14-378-quickgelu", force_image_size=384, device="meta")
        ours = _clip_model(CLIP_REAL)
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ctx.save_manifest("clip_dfn5b_vit_h_14_384", "apple/DFN5B-CLIP-ViT-H-14-384 open_clip_model.safetensors",
                      dict(_clip_config(CLIP_REAL), open_clip_model="ViT-H-14-378-quickgelu",
                           force_image_size=384), sd)
    sync = _synchformer(None)  # on CPU (~90 M parameters): its constructor calls .item() on a linspace
    # Synchformer.load_state_dict keeps only the `vfeat_extractor.*` entries of synchformer_state_dict.pth
    # (the checkpoint also holds the audio branch and the sync head, which MMAudio discards)
    ctx.save_manifest("synchformer", "synchformer_state_dict.pth (vfeat_extractor.* entries, as MMAudio loads them)",
                      _sync_config(dict(embed_dim=768, num_heads=12, depth=12, patch_size=16)), sync.state_dict())
