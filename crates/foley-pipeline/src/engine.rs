//! [`FoleyEngine`]: a loaded model bundle (MM-DiT, VAE decoder, vocoder, CLIP, Synchformer, tokenizer) and the
//! conditioning + sampling half of a generation, as `demo.py` → `eval_utils.generate` of the reference run it.
//! The request-level flow (passes, mixing, muxing) is in [`crate::run`].

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use foley_models::bigvgan::BigVGAN;
use foley_models::clip::ClipModel;
use foley_models::clip_tokenizer::ClipTokenizer;
use foley_models::mmaudio::MMAudio;
use foley_models::sampler::{FlowMatching, Step};
use foley_models::sequence::SequenceConfig;
use foley_models::synchformer::Synchformer;
use foley_models::vae::VaeDecoder;
use candle_nn::VarBuilder;
use foley_models::weights::var_builder;
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

fn model_err(what: &str) -> impl Fn(foley_models::Error) -> PipelineError + '_ {
    move |e| PipelineError::Model(format!("loading {what}: {e}"))
}

impl FoleyEngine {
    /// Loads every network of `spec` from the files on disk (see [`crate::fetch::resolve`]), in the device's
    /// default dtype (see [`Self::load_as`]).
    pub fn load(spec: ModelSpec, device: Device) -> Result<Self, PipelineError> {
        Self::load_as(spec, device, None)
    }

    /// [`Self::load`] with the networks' dtype chosen: `None` is f32 on the CPU and bf16 on GPUs (the
    /// reference's choice); GPUs also take f32 and f16, the CPU f32 only. The vocoder always runs in f32.
    pub fn load_as(spec: ModelSpec, device: Device, dtype: Option<DType>) -> Result<Self, PipelineError> {
        let dtype = Self::dtype_for(&device, dtype)?;
        let files = crate::fetch::resolve(&spec)?;
        let path = |role: &str| files.iter().find(|(r, _)| r == role).map(|(_, p)| p.clone()).unwrap_or_default();
        let dev = device.clone();
        let vb = move |role: &str, dt: DType| var_builder(path(role), dt, &dev).map_err(model_err(role));
        Self::build(spec, device, dtype, &vb, files.clone())
    }

    /// The networks of `spec` with random weights (normal, std 0.02; weight-norm gains 1) instead of
    /// checkpoints: same shapes and code path, for timing a variant without its weights. The audio is noise.
    pub fn random(spec: ModelSpec, device: Device) -> Result<Self, PipelineError> {
        Self::random_as(spec, device, None)
    }

    /// [`Self::random`] with the networks' dtype chosen, as in [`Self::load_as`].
    pub fn random_as(spec: ModelSpec, device: Device, dtype: Option<DType>) -> Result<Self, PipelineError> {
        let dtype = Self::dtype_for(&device, dtype)?;
        let dev = device.clone();
        let vb = move |_: &str, dt: DType| {
            Ok(VarBuilder::from_backend(Box::new(crate::random_weights::RandomWeights), dt, dev.clone()))
        };
        Self::build(spec, device, dtype, &vb, Vec::new())
    }

    /// The networks' dtype on `device`: f32 on the CPU (candle's half-precision CPU GEMM is no faster there,
    /// and the CPU fast paths are f32), bf16 on accelerators unless asked otherwise.
    pub fn dtype_for(device: &Device, asked: Option<DType>) -> Result<DType, PipelineError> {
        match (device.is_cpu(), asked) {
            (true, None | Some(DType::F32)) => Ok(DType::F32),
            (true, Some(d)) => Err(PipelineError::invalid(
                "dtype",
                format!("is {}; the CPU runs f32 only (f16 and bf16 are for GPUs)", d.as_str()),
            )),
            (false, None) => Ok(DType::BF16),
            (false, Some(d @ (DType::F32 | DType::F16 | DType::BF16))) => Ok(d),
            (false, Some(d)) => Err(PipelineError::invalid("dtype", format!("is {}; use f32, f16 or bf16", d.as_str()))),
        }
    }

    fn build(
        spec: ModelSpec,
        device: Device,
        dtype: DType,
        vb: &dyn Fn(&str, DType) -> Result<VarBuilder<'static>, PipelineError>,
        files: Vec<(String, PathBuf)>,
    ) -> Result<Self, PipelineError> {
        let cfgs = spec.configs()?;
        let t = Instant::now();
        let net = MMAudio::new(vb("network", dtype)?, &cfgs.network).map_err(model_err("network"))?;
        let vae = VaeDecoder::new(vb("vae", dtype)?, &cfgs.vae).map_err(model_err("vae"))?;
        // the vocoder runs in f32 (as the reference's bf16 path upcasts the mel)
        let vocoder = BigVGAN::new(vb("vocoder", DType::F32)?, &cfgs.vocoder).map_err(model_err("vocoder"))?;
        let clip = ClipModel::new(vb("clip", dtype)?, &cfgs.clip)
            .map_err(|e| PipelineError::Model(format!("loading clip: {e}")))?;
        let sync = Synchformer::new(vb("synchformer", dtype)?, &cfgs.synchformer)
            .map_err(|e| PipelineError::Model(format!("loading synchformer: {e}")))?;
        let tokenizer = ClipTokenizer::open_clip().map_err(|e| PipelineError::Model(format!("tokenizer: {e}")))?;
        tracing::info!(model = %spec.name, seconds = t.elapsed().as_secs_f64(), "model bundle loaded");
        let window_s = std::env::var("FOLEY_WINDOW_S").ok().and_then(|v| v.trim().parse::<f64>().ok());
        Ok(Self { spec, cfgs, device, dtype, net, vae, vocoder, clip, sync, tokenizer, files, window_s })
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
        let x = frames.to_dtype(self.dtype).and_then(|x| x.to_device(&self.device)).map_err(internal)?;
        self.clip.vision.forward_chunked(&x, CLIP_CHUNK).and_then(|f| f.unsqueeze(0)).map_err(internal)
    }

    /// Synchformer features of preprocessed frames `[T, 3, 224, 224]` → `(1, S·8, sync_dim)`.
    pub(crate) fn sync_features(&self, frames: &Tensor) -> Result<Tensor, PipelineError> {
        let x = frames.to_dtype(self.dtype).and_then(|x| x.to_device(&self.device)).map_err(internal)?;
        self.sync.encode_video(&x.unsqueeze(0).map_err(internal)?, SYNC_CHUNK).map_err(internal)
    }

    /// CLIP text tokens of one prompt → `(1, 77, text_dim)` (an empty prompt is encoded too, as `demo.py` does).
    pub(crate) fn text_features(&self, text: &str) -> Result<Tensor, PipelineError> {
        let ids = self.tokenizer.tokenize(text);
        let n = ids.len();
        let ids = Tensor::from_vec(ids, (1, n), &self.device).map_err(internal)?;
        self.clip.text.forward(&ids).and_then(|t| t.to_dtype(self.dtype)).map_err(internal)
    }

    /// Starting noise `(1, N, latent_dim)`: standard normal from ChaCha8 seeded with `seed`.
    fn noise(&self, seed: u64, latent_len: usize) -> Result<Tensor, PipelineError> {
        let dim = self.cfgs.network.latent_dim;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f32> = (0..latent_len * dim).map(|_| rand_distr::StandardNormal.sample(&mut rng)).collect();
        Tensor::from_vec(v, (1, latent_len, dim), &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
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
        cancel.check()?;
        let t2 = Instant::now();
        let mel = self
            .vae
            .decode_latents(&net.unnormalize(&latents).map_err(internal)?)
            .and_then(|m| Ok(m.to_dtype(DType::F32)?))
            .map_err(internal)?;
        timer.add(Stage::Vae, t2);
        cancel.check()?;
        let t3 = Instant::now();
        let audio = self.vocoder.forward(&mel).map_err(internal)?;
        let audio = audio.flatten_all().and_then(|a| a.to_vec1::<f32>()).map_err(internal)?;
        timer.add(Stage::Vocoder, t3);
        Ok(audio)
    }
}
