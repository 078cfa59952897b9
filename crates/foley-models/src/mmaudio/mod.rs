//! The MMAudio family (Cheng et al., *Taming Multimodal Joint Training for High-Quality Video-to-Audio
//! Synthesis*, reference `hkchengrex/MMAudio`): the MM-DiT generator ([`dit`], its blocks in [`layers`]), the
//! VAE decoder to mel ([`vae`]), the BigVGAN vocoders ([`bigvgan`] with [`alias_free`]), mel and latent
//! statistics ([`mel`]), the sequence lengths of a clip's duration ([`sequence`]) and the whole latent → waveform
//! generation ([`generate`]). Conditioned by CLIP and Synchformer ([`crate::encoders`]).

pub mod alias_free;
pub mod bigvgan;
pub mod dit;
pub mod generate;
pub mod layers;
pub mod mel;
pub mod sequence;
pub mod vae;

pub use dit::{Conditions, Config, MMAudio};
