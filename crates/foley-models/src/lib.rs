//! candle ports of the MMAudio family (MM-DiT generator, flow-matching sampler, VAE decoder, BigVGAN vocoders,
//! CLIP and Synchformer conditioning encoders) and the loading of their official weights.
//! Knows nothing of videos or ffmpeg: inputs are tensors.

// Conditioning encoders (issue 5)
pub mod clip_text_clean;
pub mod clip_tokenizer;
