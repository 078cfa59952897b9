//! Normalisation of the two intermediate representations of the generation chain:
//! - audio latents: the MM-DiT samples *normalised* latents; `x * latent_std + latent_mean`
//!   (`MMAudio.unnormalize` in `mmaudio/model/networks.py`) gives the VAE's latents;
//! - mel spectrograms: the VAE decoder outputs normalised mels; `x * data_std + data_mean`
//!   (`VAE.unnormalize` in `mmaudio/ext/autoencoder/vae.py`) gives the log-mel the vocoder expects
//!   (80 bins, log10 at 16 kHz; 128 bins, ln at 44.1 kHz).
//!
//! Both statistics are stored in the checkpoints (`latent_mean`/`latent_std` of the network,
//! `data_mean`/`data_std` of the VAE). Reference: github.com/hkchengrex/MMAudio at commit 974010a.

use candle_core::Tensor;

use crate::error::{Error, Result};

/// Per-channel statistics over the last dimension of `(B, N, C)` latents (stored as `(1, 1, C)`).
#[derive(Debug, Clone)]
pub struct LatentStats {
    mean: Tensor,
    std: Tensor,
}

impl LatentStats {
    pub fn new(mean: Tensor, std: Tensor) -> Result<Self> {
        let c = mean.elem_count();
        if std.elem_count() != c {
            return Err(Error::Weights(format!(
                "latent mean has {c} values, std {}",
                std.elem_count()
            )));
        }
        Ok(Self {
            mean: mean.reshape((1, 1, c))?,
            std: std.reshape((1, 1, c))?,
        })
    }
    /// `(x - mean) / std`.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }
    /// `x * std + mean`.
    pub fn unnormalize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.std)?.broadcast_add(&self.mean)?)
    }
}

/// Per-mel-bin statistics over dimension 1 of `(B, n_mels, T)` spectrograms (stored as `(1, n_mels, 1)`).
#[derive(Debug, Clone)]
pub struct MelStats {
    mean: Tensor,
    std: Tensor,
}

impl MelStats {
    pub fn new(mean: Tensor, std: Tensor) -> Result<Self> {
        let c = mean.elem_count();
        if std.elem_count() != c {
            return Err(Error::Weights(format!(
                "mel mean has {c} values, std {}",
                std.elem_count()
            )));
        }
        Ok(Self {
            mean: mean.reshape((1, c, 1))?,
            std: std.reshape((1, c, 1))?,
        })
    }
    pub fn n_mels(&self) -> usize {
        self.mean.elem_count()
    }
    /// `(x - mean) / std`.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }
    /// `x * std + mean`.
    pub fn unnormalize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(&self.std)?.broadcast_add(&self.mean)?)
    }
}
