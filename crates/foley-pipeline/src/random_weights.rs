//! [`RandomWeights`] (random tensors of whatever shape a network asks for) lives in foley-models, where the
//! FFmpeg-free GPU bench uses it too; re-exported here for the engine's `random` constructors.

pub use foley_models::weights::random::RandomWeights;
