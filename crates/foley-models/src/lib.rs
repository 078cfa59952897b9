//! candle ports of foley's model families and the loading of their official weights. Knows nothing of videos or
//! ffmpeg: inputs are tensors. The CPU kernels the networks call are `foley_kernels`'.
//!
//! - [`mmaudio`]: the MMAudio family, one file per network (MM-DiT, its layers, VAE, BigVGAN vocoders, mel and
//!   latent statistics, the sequence lengths of a duration, the whole generation);
//! - shared by the families: [`encoders`] (conditioning encoders: CLIP, Synchformer and their frame
//!   preprocessing), [`text`] (tokenizers), [`weights`] (checkpoint loading, checking, random weights at real
//!   shapes) and [`sampler`] (the flow-matching Euler sampler with classifier-free guidance, over any
//!   [`sampler::FlowModel`]).
//!
//! A new family is a new folder beside `mmaudio/` plus its variants' manifests in `models/`; no family imports
//! another.

pub mod encoders;
pub mod error;
pub mod mmaudio;
pub mod sampler;
pub mod text;
pub mod weights;

pub use error::{Error, Result};
