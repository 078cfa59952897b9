//! End-to-end generation from conditioning features to waveform, as `generate()` in `mmaudio/eval_utils.py` of
//! github.com/hkchengrex/MMAudio at commit 974010a026c731054592d8f777218bd9d85a6c24 does it after feature
//! extraction: missing clip / sync / text features become the network's learned empty sequences (text-only or
//! video-only generation), the negative prompt (if any) conditions the unconditional branch, the Euler sampler
//! integrates from the given noise, and the latents are unnormalised, decoded to a mel and vocoded.

use candle_core::Tensor;

use crate::mmaudio::bigvgan::BigVGAN;
use crate::error::{Error, Result};
use crate::mmaudio::MMAudio;
use crate::sampler::{FlowMatching, Step};
use crate::mmaudio::vae::VaeDecoder;

/// Conditioning features of one batch; `None` stands for "absent" (the learned empty features are used).
#[derive(Debug, Clone, Default)]
pub struct Features<'a> {
    /// CLIP frame features `(B, clip_len, clip_dim)` (8 fps).
    pub clip: Option<&'a Tensor>,
    /// Synchformer features `(B, sync_len, sync_dim)`.
    pub sync: Option<&'a Tensor>,
    /// CLIP text tokens `(B, 77, text_dim)`.
    pub text: Option<&'a Tensor>,
    /// Negative prompt tokens `(B, 77, text_dim)`.
    pub negative_text: Option<&'a Tensor>,
}

/// The generation chain: network, sampler settings, VAE decoder and vocoder.
pub struct Generator<'m> {
    pub net: &'m MMAudio,
    pub vae: &'m VaeDecoder,
    pub vocoder: &'m BigVGAN,
    pub fm: FlowMatching,
    pub cfg_strength: f64,
}

/// What [`Generator::generate`] returns.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Sampler output, normalised latents `(B, N, latent_dim)`.
    pub latents: Tensor,
    /// Log-mel `(B, n_mels, 2N)`.
    pub mel: Tensor,
    /// Waveform `(B, 1, samples)`.
    pub audio: Tensor,
}

impl Generator<'_> {
    /// `x0`: the starting noise `(B, latent_len, latent_dim)` (its length sets the duration); `clip_len` and
    /// `sync_len` give the lengths of the empty sequences used for absent video features.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &self,
        features: &Features,
        x0: &Tensor,
        clip_len: usize,
        sync_len: usize,
        on_step: &mut dyn FnMut(Step),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generated> {
        let (bs, latent_len, _) = x0.dims3()?;
        let net = self.net;
        let clip = match features.clip {
            Some(c) => c.clone(),
            None => net.empty_clip_sequence(bs, clip_len)?,
        };
        let sync = match features.sync {
            Some(s) => s.clone(),
            None => net.empty_sync_sequence(bs, sync_len)?,
        };
        let text = match features.text {
            Some(t) => t.clone(),
            None => net.empty_string_sequence(bs)?,
        };
        let (clip_len, sync_len) = (clip.dim(1)?, sync.dim(1)?);
        let cond = net.preprocess_conditions(&clip, &sync, &text, latent_len)?;
        let uncond = net.empty_conditions(bs, latent_len, clip_len, sync_len, features.negative_text)?;
        let latents = self
            .fm
            .to_data(net, x0, &cond, &uncond, self.cfg_strength, on_step, cancelled)?;
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let mel = self.vae.decode_latents(&net.unnormalize(&latents)?)?;
        let audio = self.vocoder.forward(&mel)?;
        Ok(Generated { latents, mel, audio })
    }
}
