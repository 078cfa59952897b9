//! Conditioning encoders the families share: CLIP (open_clip's vision and text towers, [`clip`], on the ViT
//! layers of [`vit_layers`]), Synchformer's visual features ([`synchformer`]) and the frame preprocessing both
//! expect ([`preprocess`]).

pub mod clip;
pub mod preprocess;
pub mod synchformer;
pub mod vit_layers;
