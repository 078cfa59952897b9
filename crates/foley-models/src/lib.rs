//! candle ports of the MMAudio family (MM-DiT generator, flow-matching sampler, VAE decoder, BigVGAN vocoders,
//! CLIP and Synchformer conditioning encoders) and the loading of their official weights.
//! Knows nothing of videos or ffmpeg: inputs are tensors.

// Generation side (issue 4): MM-DiT, sampler, VAE decoder, vocoders, weight loading
pub mod alias_free;
pub mod alloc;
pub mod attention_cpu;
mod alias_free_cpu;
pub mod bigvgan;
pub mod checked;
pub mod conv;
pub mod conv_transpose;
pub mod cpu_bf16;
pub mod error;
#[cfg(test)]
mod error_bounds;
pub mod generate;
pub mod linear;
pub mod mel;
pub mod mmaudio;
pub mod mmaudio_layers;
mod mmaudio_cpu;
pub mod random_weights;
pub mod sampler;
pub mod sequence;
pub mod vae;
pub mod weights;

pub use error::{Error, Result};

// Conditioning encoders (issue 5)
pub mod clip;
pub mod clip_text_clean;
pub mod clip_tokenizer;
pub mod fast_ops;
pub mod preprocess;
pub mod synchformer;
pub mod vit_layers;
