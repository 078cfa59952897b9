#!/usr/bin/env python3
"""The PyTorch reference's side of `foley bench`: MMAudio's own inference path (demo.py / eval_utils: load_video,
FeaturesUtils.encode_video_with_clip / encode_video_with_sync / encode_text, MMAudio.preprocess_conditions +
FlowMatching Euler with CFG, VAE decode, BigVGAN, make_video) at a variant's real shapes with random weights, on
the same kind of generated clip, timed per stage. Prints the same JSON fields as `foley bench --json`.

    python3 scripts/bench_reference.py [--model small_16k] [--duration 8] [--steps 25] [--threads N]
        [--device cpu|cuda] [--dtype f32|bf16|f16] [--video clip.mp4 | --frames random] [--json]

Networks are built from the reference's constructors (open_clip ViT-H-14-378-quickgelu at 384 px for DFN5B CLIP,
the reference's Synchformer / MMAudio / VAE / BigVGAN classes) with their default random initialisation: no
checkpoint is read. The reference comes from the pinned MMAudio commit (scripts/parity/common.py; --reference or
$FOLEY_MMAUDIO_REF). Its frame reader and muxer need PyAV (`pip install av`) and the ffmpeg CLI writes the test
clip; `--frames random` needs neither (no frames or mux stage: random frames of load_video's shapes and value
ranges go straight to the encoders, as on the lent GPU machine, which has no FFmpeg; scripts/device-check).
BigVGAN-v2 (44 kHz variants) is built from its restated config (scripts/parity/generation.py) with random
weights, not fetched from the hub. On CUDA each stage also reports `gpu_s` (CUDA events) and the report
`peak_gpu_mb` (torch.cuda.max_memory_reserved over the run, weights included) and `peak_gpu_allocated_mb`.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from parity.common import prepare_reference  # noqa: E402

PROMPT = "footsteps on gravel"  # as `foley bench`


def test_clip(path, secs):
    """The same testsrc2 clip `foley bench` writes (1280x720, 25 fps, h264, no audio)."""
    src = f"testsrc2=size=1280x720:rate=25:duration={secs}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", src,
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)


def cpu():
    return time.process_time()


def random_frames(duration):
    """What eval_utils.load_video returns for a clip of `duration` s, with random pixels: clip frames
    (8 fps, 3x384x384, in [0, 1]) and sync frames (25 fps, 3x224x224, normalised to [-1, 1])."""
    import torch
    from types import SimpleNamespace
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(int(duration * 8), 3, 384, 384, generator=g)
    sync = torch.rand(int(duration * 25), 3, 224, 224, generator=g) * 2 - 1
    return SimpleNamespace(clip_frames=clip, sync_frames=sync, duration_sec=duration)


def mux(make_video, info, path, audio, rate):
    """eval_utils.make_video (re-encodes the video as h264 with the AAC track), as demo.py calls it. Random
    weights overflow the reference's BigVGAN at real depth to inf/NaN, which FFmpeg's AAC encoder refuses
    (avcodec_send_frame: EINVAL); real weights never produce them, so they are zeroed first (one pass over the
    samples, negligible next to the encode)."""
    import torch
    audio = torch.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0).clamp(-1.0, 1.0)
    return make_video(info, path, audio, sampling_rate=rate)


def build(model, device, dtype):
    """FeaturesUtils (CLIP, Synchformer, tokenizer, VAE, vocoder) and the MM-DiT of `model`, random weights."""
    import torch
    with torch.device(device):  # random initialisation on the device itself (minutes on the host at 1B weights)
        return _build(model, device, dtype)


def _build(model, device, dtype):
    import open_clip
    import torch
    from torchvision.transforms import Normalize
    from mmaudio.eval_utils import all_model_cfg
    from mmaudio.ext.autoencoder import AutoEncoderModule
    from mmaudio.ext.autoencoder.vae import get_my_vae
    from mmaudio.model.networks import get_my_mmaudio
    from mmaudio.model.utils.features_utils import FeaturesUtils, patch_clip
    from parity.encoders import _synchformer

    cfg = all_model_cfg[model]
    fu = FeaturesUtils.__new__(FeaturesUtils)
    torch.nn.Module.__init__(fu)
    fu.clip_model = patch_clip(open_clip.create_model("ViT-H-14-378-quickgelu", force_image_size=384, device=device).eval())
    fu.clip_preprocess = Normalize(mean=[0.48145466, 0.4578275, 0.40821073], std=[0.26862954, 0.26130258, 0.27577711])
    fu.synchformer = _synchformer(None)  # the real MotionFormer config
    fu.tokenizer = open_clip.get_tokenizer("ViT-H-14-378-quickgelu")
    tod = AutoEncoderModule.__new__(AutoEncoderModule)
    torch.nn.Module.__init__(tod)
    tod.vae = get_my_vae(cfg.mode).eval()
    tod.vae.remove_weight_norm()
    del tod.vae.encoder
    if cfg.mode == "16k":
        import mmaudio.ext.bigvgan as bv
        from mmaudio.ext.bigvgan.models import BigVGANVocoder
        from omegaconf import OmegaConf
        tod.vocoder = BigVGANVocoder(OmegaConf.load(Path(bv.__file__).parent / "bigvgan_vocoder.yml")).eval()
        tod.vocoder.remove_weight_norm()
    else:  # nvidia/bigvgan_v2_44khz_128band_512x's architecture, random weights (from_pretrained needs the hub)
        from mmaudio.ext.bigvgan_v2.bigvgan import BigVGAN as BigVGANv2
        from mmaudio.ext.bigvgan_v2.env import AttrDict
        from parity.generation import BIGVGAN_V2_44K
        tod.vocoder = BigVGANv2(AttrDict(dict(BIGVGAN_V2_44K)), use_cuda_kernel=False).eval()
        tod.vocoder.remove_weight_norm()
    fu.tod = tod
    fu = fu.to(device, dtype).eval()
    net = get_my_mmaudio(cfg.model_name).to(device, dtype).eval()
    return cfg, fu, net


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small_16k")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="bf16", choices=["f32", "bf16", "f16"],
                    help="default bf16 on every device, as the reference's demo.py (f32 only with --full_precision)")
    ap.add_argument("--video", help="clip to use (default: a generated testsrc2 clip of --duration)")
    ap.add_argument("--frames", default="video", choices=["video", "random"],
                    help="random: no video, PyAV or ffmpeg; random frames of load_video's shapes (no frames/mux)")
    ap.add_argument("--reference", default=os.environ.get("FOLEY_MMAUDIO_REF"))
    ap.add_argument("--clip-batch", type=int, default=40,
                    help="frames per CLIP / segments per Synchformer call (eval_utils.generate: 40 for one clip); "
                         "smaller needs less memory for the same work")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype_name = args.dtype
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype_name]
    device = torch.device(args.device)
    prepare_reference(args.reference)
    from parity.encoders import _stub_missing
    _stub_missing("librosa.filters", mel=None)  # the mel converter is imported by FeaturesUtils, never called here
    if args.frames == "random":  # imported by eval_utils, never called without a video (no downloads either)
        _stub_missing("av", AudioFrame=object)
        _stub_missing("colorlog", ColoredFormatter=object)
        _stub_missing("requests")
    from mmaudio.eval_utils import load_video, make_video
    from mmaudio.model.flow_matching import FlowMatching

    t = time.perf_counter()
    cfg, fu, net = build(args.model, device, dtype)
    load_s = time.perf_counter() - t
    seq_cfg = cfg.seq_cfg

    work = Path(tempfile.mkdtemp(prefix="foley-bench-ref-"))
    video = Path(args.video) if args.video else work / "bench.mp4"
    if not args.video and args.frames == "video":
        test_clip(video, args.duration)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    stages = []

    def stage(name, fn):
        if cuda:
            torch.cuda.synchronize()
            ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev0.record()
        w, c = time.perf_counter(), cpu()
        try:
            out = fn()
        except Exception as e:  # keep the stages measured so far (a failed mux still leaves a report)
            stages.append(dict(stage=name, wall_s=None, cpu_s=None, error=repr(e)))
            print(f"{name}: failed: {e!r}", file=sys.stderr, flush=True)
            return None
        gpu_s = None
        if cuda:
            ev1.record()
            torch.cuda.synchronize()
            gpu_s = ev0.elapsed_time(ev1) / 1e3
        stages.append(dict(stage=name, wall_s=time.perf_counter() - w, cpu_s=cpu() - c, gpu_s=gpu_s))
        print(f"{name}: {stages[-1]['wall_s']:.2f} s wall, {stages[-1]['cpu_s']:.2f} s cpu", file=sys.stderr, flush=True)
        return out

    rng = torch.Generator(device=device).manual_seed(42)
    fm = FlowMatching(min_sigma=0, inference_mode="euler", num_steps=args.steps)
    info = random_frames(args.duration) if args.frames == "random" else None  # made before the timed span
    w0, c0 = time.perf_counter(), cpu()
    with torch.inference_mode():
        if info is None:
            info = stage("frames", lambda: load_video(video, args.duration))  # demo.py: all frames kept for the mux
        seq_cfg.duration = info.duration_sec
        net.update_seq_lengths(seq_cfg.latent_seq_len, seq_cfg.clip_seq_len, seq_cfg.sync_seq_len)
        clip_v = info.clip_frames.unsqueeze(0).to(device, dtype)
        sync_v = info.sync_frames.unsqueeze(0).to(device, dtype)
        clip_f = stage("clip", lambda: fu.encode_video_with_clip(clip_v, batch_size=args.clip_batch))
        sync_f = stage("synchformer", lambda: fu.encode_video_with_sync(sync_v, batch_size=args.clip_batch))
        # demo.py passes negative_text=[args.negative_prompt] (default ''), so generate() encodes both
        text_f, neg_f = stage("text", lambda: (fu.encode_text([PROMPT]), fu.encode_text([""])))

        def sample():
            x0 = torch.randn(1, net.latent_seq_len, net.latent_dim, device=device, dtype=dtype, generator=rng)
            cond = net.preprocess_conditions(clip_f, sync_f, text_f)
            empty = net.get_empty_conditions(1, negative_text_features=neg_f)
            return fm.to_data(lambda t, x: net.ode_wrapper(t, x, cond, empty, 4.5), x0)

        x1 = stage("sampling", sample)
        spec = stage("vae", lambda: fu.decode(net.unnormalize(x1)))
        audio = stage("vocoder", lambda: fu.vocode(spec).float().cpu())
        if args.frames == "video":
            stage("mux", lambda: mux(make_video, info, work / "out.mp4", audio[0], seq_cfg.sampling_rate))
    e2e, e2e_cpu = time.perf_counter() - w0, cpu() - c0
    sampling = next(s["wall_s"] for s in stages if s["stage"] == "sampling")
    report = dict(implementation="reference", clip_batch=args.clip_batch, model=args.model, device=args.device,
                  dtype=dtype_name, threads=torch.get_num_threads(), duration_s=info.duration_sec, steps=args.steps,
                  load_s=load_s,
                  stages=stages, sampler_per_step_s=sampling / args.steps, end_to_end_s=e2e, end_to_end_cpu_s=e2e_cpu,
                  rtf=e2e / info.duration_sec,
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                  peak_gpu_mb=torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
                  peak_gpu_allocated_mb=torch.cuda.max_memory_allocated() / 2**20 if cuda else None)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"reference: {args.model} on {args.device} ({dtype_name}, {report['threads']} threads), "
              f"{info.duration_sec:.2f} s clip, {args.steps} steps, random weights (load {load_s:.2f} s)")
        for s in stages:
            print(f"{s['stage']:<14} {s['wall_s']:>10.3f} {s['cpu_s']:>10.2f}")
        print(f"{'sampler/step':<14} {report['sampler_per_step_s']:>10.3f}")
        print(f"{'end to end':<14} {e2e:>10.3f} {e2e_cpu:>10.2f}")
        print(f"real-time factor {report['rtf']:.2f}, peak RSS {report['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
