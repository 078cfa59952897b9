//! [`FoleyEngine`]: a loaded model bundle (MM-DiT, VAE decoder, vocoder, CLIP, Synchformer, tokenizer) and the
//! conditioning + sampling half of a generation, as `demo.py` → `eval_utils.generate` of the reference run it.
//! The request-level flow (passes, mixing, muxing) is in [`crate::run`].

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use foley_models::mmaudio::bigvgan::BigVGAN;
use foley_models::encoders::clip::ClipModel;
use foley_models::text::clip_tokenizer::ClipTokenizer;
use foley_models::mmaudio::MMAudio;
use foley_models::sampler::{FlowMatching, Step};
use foley_models::mmaudio::sequence::SequenceConfig;
use foley_models::encoders::synchformer::Synchformer;
use foley_models::mmaudio::vae::VaeDecoder;
use candle_nn::VarBuilder;
use foley_models::weights::checked::CheckedFile;
use rand::SeedableRng;
use rand_distr::Distribution;

use crate::bundle::{Configs, ModelSpec};
use crate::error::PipelineError;
use crate::features::internal;
use crate::request::{CancelToken, Stage};

/// Frames per CLIP / Synchformer forward (bounds attention memory on long clips).
const CLIP_CHUNK: usize = 16;
const SYNC_CHUNK: usize = 8;

/// A loaded bundle. Cheap to share (`Arc`); every method takes `&self`.
pub struct FoleyEngine {
    pub(crate) spec: ModelSpec,
    pub(crate) cfgs: Configs,
    pub(crate) device: Device,
    pub(crate) dtype: DType,
    /// The activations' dtype: `dtype`, except f32 for bf16 on the CPU (bf16 weights, f32 activations).
    compute: DType,
    net: MMAudio,
    vae: VaeDecoder,
    vocoder: BigVGAN,
    clip: ClipModel,
    sync: Synchformer,
    tokenizer: ClipTokenizer,
    pub(crate) files: Vec<(String, PathBuf)>,
    /// Windowed generation (`FOLEY_WINDOW_S`), `None`: one pass over the whole clip.
    pub(crate) window_s: Option<f64>,
}

/// Stage timings collected during a generation (summed over passes).
#[derive(Debug, Default)]
pub(crate) struct Timer(pub Vec<(Stage, f64)>);

impl Timer {
    pub fn add(&mut self, stage: Stage, since: Instant) {
        let s = since.elapsed().as_secs_f64();
        match self.0.iter_mut().find(|(st, _)| *st == stage) {
            Some((_, t)) => *t += s,
            None => self.0.push((stage, s)),
        }
    }
}

/// One sampling pass's conditioning: video features (absent: learned empty ones) and prompts.
pub(crate) struct Pass<'a> {
    pub clip: Option<&'a Tensor>,
    pub sync: Option<&'a Tensor>,
    pub text: &'a str,
    pub negative: &'a str,
    pub seed: u64,
}

/// Where the networks' weights come from.
enum Weights<'a> {
    /// Checkpoint files by role, loaded through [`CheckedFile`].
    Files(&'a [(String, PathBuf)]),
    /// Random weights of the right shapes ([`crate::random_weights`]).
    Random,
}

/// Parts of a checkpoint that generation never reads: the VAE's encoder; the 2-D patch embedding MotionFormer
/// keeps only to count patches (see `tests/manifests_encoders.rs`).
fn unused_prefixes(role: &str) -> &'static [&'static str] {
    match role {
        "vae" => &["encoder."],
        "synchformer" => &["vfeat_extractor.patch_embed.proj."],
        _ => &[],
    }
}

/// Builds the network of `role` with `build` from `w`; a bad checkpoint gives one sentence naming the file.
fn load_role<T, E: std::fmt::Display>(
    w: &Weights,
    role: &str,
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder<'static>) -> Result<T, E>,
) -> Result<T, PipelineError> {
    let refused = |e: foley_models::Error| {
        let e = e.to_string();
        PipelineError::Model(format!("the {role} checkpoint is refused: {}", e.strip_prefix("weights: ").unwrap_or(&e)))
    };
    match w {
        Weights::Random => {
            let vb = VarBuilder::from_backend(Box::new(crate::random_weights::RandomWeights), dtype, device.clone());
            build(vb).map_err(|e| PipelineError::Model(format!("building the {role} network: {e}")))
        }
        Weights::Files(files) => {
            let path = files
                .iter()
                .find(|(r, _)| r == role)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| PipelineError::Model(format!("no {role} checkpoint")))?;
            let file = CheckedFile::open(&path, dtype, device).map_err(refused)?;
            let built = build(file.var_builder());
            file.finish(built, unused_prefixes(role)).map_err(refused)
        }
    }
}

impl FoleyEngine {
    /// Loads every network of `spec` from the files on disk (see [`crate::fetch::resolve`]), in the device's
    /// default dtype (see [`Self::load_as`]).
    pub fn load(spec: ModelSpec, device: Device) -> Result<Self, PipelineError> {
        Self::load_as(spec, device, None)
    }

    /// [`Self::load`] with the networks' dtype chosen: `None` is f32 on the CPU and bf16 on GPUs (the
    /// reference's choice); GPUs also take f32 and f16, the CPU bf16 (see [`Self::dtype_for`]). The vocoder
    /// always runs in f32.
    pub fn load_as(spec: ModelSpec, device: Device, dtype: Option<DType>) -> Result<Self, PipelineError> {
        Self::load_from(spec, device, dtype, None)
    }

    /// [`Self::load_as`] looking for the checkpoints in `weights_dir` first (`--weights-dir`; see
    /// [`crate::fetch::locate_role`]). Whatever the files store (f32, f16, bf16; `.pth` or safetensors) is
    /// converted to the engine's dtype; a file with missing, unexpected or misshapen keys or non-finite values is
    /// refused with a sentence naming it (see [`foley_models::weights::checked`]).
    pub fn load_from(
        spec: ModelSpec,
        device: Device,
        dtype: Option<DType>,
        weights_dir: Option<&std::path::Path>,
    ) -> Result<Self, PipelineError> {
        let dtype = Self::dtype_for(&device, dtype)?;
        let files = crate::fetch::resolve_in(&spec, weights_dir)?;
        Self::build(spec, device, dtype, Weights::Files(&files), files.clone())
    }

    /// The networks of `spec` with random weights (normal, std 0.02; weight-norm gains 1) instead of
    /// checkpoints: same shapes and code path, for timing a variant without its weights. The audio is noise.
    pub fn random(spec: ModelSpec, device: Device) -> Result<Self, PipelineError> {
        Self::random_as(spec, device, None)
    }

    /// [`Self::random`] with the networks' dtype chosen, as in [`Self::load_as`].
    pub fn random_as(spec: ModelSpec, device: Device, dtype: Option<DType>) -> Result<Self, PipelineError> {
        let dtype = Self::dtype_for(&device, dtype)?;
        Self::build(spec, device, dtype, Weights::Random, Vec::new())
    }

    /// The networks' dtype on `device`: f32 on the CPU unless bf16 is asked (weights held in bf16, products
    /// accumulated in f32: see [`foley_kernels::cpu_bf16`]), bf16 on accelerators unless asked otherwise.
    pub fn dtype_for(device: &Device, asked: Option<DType>) -> Result<DType, PipelineError> {
        match (device.is_cpu(), asked) {
            (true, None | Some(DType::F32)) => Ok(DType::F32),
            (true, Some(DType::BF16)) => Ok(DType::BF16),
            (true, Some(d)) => Err(PipelineError::invalid(
                "dtype",
                format!("is {}; the CPU runs f32 or bf16 (f16 is for GPUs)", d.as_str()),
            )),
            (false, None) => Ok(DType::BF16),
            (false, Some(d @ (DType::F32 | DType::F16 | DType::BF16))) => Ok(d),
            (false, Some(d)) => Err(PipelineError::invalid("dtype", format!("is {}; use f32, f16 or bf16", d.as_str()))),
        }
    }

    /// The dtype the networks were built in (the one asked for, or the device's default).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn build(
        spec: ModelSpec,
        device: Device,
        dtype: DType,
        w: Weights,
        files: Vec<(String, PathBuf)>,
    ) -> Result<Self, PipelineError> {
        let cfgs = spec.configs()?;
        let t = Instant::now();
        let dev = &device;
        // bf16 on the CPU: f32 networks whose GEMM weights are held in bf16 (foley_kernels::cpu_bf16)
        let cpu_bf16 = device.is_cpu() && dtype == DType::BF16;
        let compute = if cpu_bf16 { DType::F32 } else { dtype };
        if cpu_bf16 {
            tracing::info!(kernel = foley_kernels::cpu_bf16::Kernel::get().name(), "CPU bf16: weights held in bf16");
        }
        let networks = || -> Result<_, PipelineError> {
            Ok((
                load_role(&w, "network", compute, dev, |vb| MMAudio::new(vb, &cfgs.network))?,
                load_role(&w, "vae", compute, dev, |vb| VaeDecoder::new(vb, &cfgs.vae))?,
                load_role(&w, "clip", compute, dev, |vb| ClipModel::new(vb, &cfgs.clip))?,
                load_role(&w, "synchformer", compute, dev, |vb| Synchformer::new(vb, &cfgs.synchformer))?,
            ))
        };
        let (net, vae, clip, sync) = match cpu_bf16 {
            true => foley_kernels::cpu_bf16::with_bf16_weights(networks)?,
            false => networks()?,
        };
        // the vocoder runs in f32 (as the reference's bf16 path upcasts the mel)
        let vocoder = load_role(&w, "vocoder", DType::F32, dev, |vb| BigVGAN::new(vb, &cfgs.vocoder))?;
        let tokenizer = ClipTokenizer::open_clip().map_err(|e| PipelineError::Model(format!("tokenizer: {e}")))?;
        tracing::info!(model = %spec.name, seconds = t.elapsed().as_secs_f64(), "model bundle loaded");
        let window_s = std::env::var("FOLEY_WINDOW_S").ok().and_then(|v| v.trim().parse::<f64>().ok());
        Ok(Self { spec, cfgs, device, dtype, compute, net, vae, vocoder, clip, sync, tokenizer, files, window_s })
    }

    /// Checks one checkpoint file as the engine would load it for `role` of `spec` (on the CPU, in f32): keys,
    /// shapes and finiteness of every tensor (`foley models import` runs this on every file it places).
    pub fn check_file(spec: &ModelSpec, role: &str, path: &std::path::Path) -> Result<(), PipelineError> {
        let cfgs = spec.configs()?;
        let files = [(role.to_string(), path.to_path_buf())];
        let w = Weights::Files(&files);
        let (dt, dev) = (DType::F32, &Device::Cpu);
        match role {
            "network" => load_role(&w, role, dt, dev, |vb| MMAudio::new(vb, &cfgs.network)).map(drop),
            "vae" => load_role(&w, role, dt, dev, |vb| VaeDecoder::new(vb, &cfgs.vae)).map(drop),
            "vocoder" => load_role(&w, role, dt, dev, |vb| BigVGAN::new(vb, &cfgs.vocoder)).map(drop),
            "clip" => load_role(&w, role, dt, dev, |vb| ClipModel::new(vb, &cfgs.clip)).map(drop),
            "synchformer" => load_role(&w, role, dt, dev, |vb| Synchformer::new(vb, &cfgs.synchformer)).map(drop),
            other => Err(PipelineError::Model(format!("unknown checkpoint role {other}"))),
        }
    }

    /// Generates in windows of `window_s` seconds with crossfaded overlaps (`None`: the whole clip in one pass,
    /// the default; see [`crate::window`]).
    pub fn with_window(mut self, window_s: Option<f64>) -> Self {
        self.window_s = window_s;
        self
    }

    /// The bundle's description.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The checkpoint files loaded, by role.
    pub fn files(&self) -> &[(String, PathBuf)] {
        &self.files
    }

    /// CLIP features of preprocessed frames `[T, 3, 384, 384]` → `(1, T, clip_dim)`.
    pub(crate) fn clip_features(&self, frames: &Tensor) -> Result<Tensor, PipelineError> {
        let x = frames.to_dtype(self.compute).and_then(|x| x.to_device(&self.device)).map_err(internal)?;
        self.clip.vision.forward_chunked(&x, CLIP_CHUNK).and_then(|f| f.unsqueeze(0)).map_err(internal)
    }

    /// Synchformer features of preprocessed frames `[T, 3, 224, 224]` → `(1, S·8, sync_dim)`.
    pub(crate) fn sync_features(&self, frames: &Tensor) -> Result<Tensor, PipelineError> {
        let x = frames.to_dtype(self.compute).and_then(|x| x.to_device(&self.device)).map_err(internal)?;
        self.sync.encode_video(&x.unsqueeze(0).map_err(internal)?, SYNC_CHUNK).map_err(internal)
    }

    /// CLIP text tokens of one prompt → `(1, 77, text_dim)` (an empty prompt is encoded too, as `demo.py` does).
    pub(crate) fn text_features(&self, text: &str) -> Result<Tensor, PipelineError> {
        let ids = self.tokenizer.tokenize(text);
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &self.device).map_err(internal)?;
        self.clip.text.forward(&ids).and_then(|t| t.to_dtype(self.compute)).map_err(internal)
    }

    /// Starting noise `(1, N, latent_dim)`: standard normal from ChaCha8 seeded with `seed`.
    fn noise(&self, seed: u64, latent_len: usize) -> Result<Tensor, PipelineError> {
        let dim = self.cfgs.network.latent_dim;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..latent_len * dim).map(|_| rand_distr::StandardNormal.sample(&mut rng)).collect();
        Tensor::from_vec(v, (1, latent_len, dim), &self.device)
            .and_then(|t| t.to_dtype(self.compute))
            .map_err(internal)
    }

    /// One generation pass (`eval_utils.generate` after feature extraction): sampler with CFG, unnormalise,
    /// VAE decode, vocoder. Returns mono samples at the model rate, `seq.num_audio_frames()` long.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sample(
        &self,
        pass: &Pass,
        seq: &SequenceConfig,
        steps: usize,
        cfg_strength: f64,
        cancel: &CancelToken,
        on_step: &mut dyn FnMut(Step),
        timer: &mut Timer,
    ) -> Result<Vec<f32>, PipelineError> {
        let t0 = Instant::now();
        let (latent_len, clip_len, sync_len) = (seq.latent_seq_len(), seq.clip_seq_len(), seq.sync_seq_len());
        let net = &self.net;
        let clip = match pass.clip {
            Some(c) => c.clone(),
            None => net.empty_clip_sequence(1, clip_len).map_err(internal)?,
        };
        let sync = match pass.sync {
            Some(s) => s.clone(),
            None => net.empty_sync_sequence(1, sync_len).map_err(internal)?,
        };
        let text = self.text_features(pass.text)?;
        let negative = self.text_features(pass.negative)?;
        timer.add(Stage::Text, t0);
        let t1 = Instant::now();
        let (clip_len, sync_len) = (clip.dim(1).map_err(internal)?, sync.dim(1).map_err(internal)?);
        let cond = net.preprocess_conditions(&clip, &sync, &text, latent_len).map_err(internal)?;
        let uncond = net.empty_conditions(1, latent_len, clip_len, sync_len, Some(&negative)).map_err(internal)?;
        let x0 = self.noise(pass.seed, latent_len)?;
        let fm = FlowMatching::new(steps);
        let cancelled = || cancel.is_cancelled();
        let latents = fm.to_data(net, &x0, &cond, &uncond, cfg_strength, on_step, &cancelled).map_err(|e| match e {
            foley_models::Error::Cancelled => PipelineError::Cancelled,
            e => internal(e),
        })?;
        timer.add(Stage::Sampling, t1);
        self.finite(&latents, Stage::Sampling, self.dtype)?;
        cancel.check()?;
        let t2 = Instant::now();
        let mel = self
            .vae
            .decode_latents(&net.unnormalize(&latents).map_err(internal)?)
            .and_then(|m| Ok(m.to_dtype(DType::F32)?))
            .map_err(internal)?;
        timer.add(Stage::Vae, t2);
        self.finite(&mel, Stage::Vae, self.dtype)?;
        cancel.check()?;
        let t3 = Instant::now();
        let audio = self.vocoder.forward(&mel).map_err(internal)?;
        let audio = audio.flatten_all().and_then(|a| a.to_vec1::<f32>()).map_err(internal)?;
        timer.add(Stage::Vocoder, t3);
        if !audio.iter().all(|s| s.is_finite()) {
            return Err(PipelineError::NonFinite { stage: Stage::Vocoder, dtype: DType::F32.as_str().into() });
        }
        Ok(audio)
    }

    /// Refuses a stage's output holding NaN or ±inf, naming the stage (never handed on to mixing and FFmpeg).
    fn finite(&self, t: &Tensor, stage: Stage, dtype: DType) -> Result<(), PipelineError> {
        match foley_models::weights::checked::all_finite(t).map_err(internal)? {
            true => Ok(()),
            false => Err(PipelineError::NonFinite { stage, dtype: dtype.as_str().into() }),
        }
    }
}
