//! A candle `VarBuilder` backend that hands out random tensors of whatever shape a network asks for: the
//! released variants' code path at their real sizes without their checkpoints (timings on machines that cannot
//! download them). Weight-norm gains (`…original0`, `weight_g`) and norm scales are 1, biases 0, everything else
//! normal with std 0.02 — enough for realistic timings; the audio is noise.

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, _: candle_nn::Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let ones = name.ends_with("original0") || name.ends_with("weight_g") || name.ends_with("_std")
            || (name.contains("norm") && name.ends_with("weight"));
        let t = if ones {
            Tensor::ones(s, DType::F32, dev)?
        } else if name.ends_with("bias") || name.ends_with("_mean") {
            Tensor::zeros(s, DType::F32, dev)?
        } else {
            Tensor::randn(0f32, 0.02, s, dev)?
        };
        t.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("random weights: {name} requested without a shape")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        // the weight-norm spelling of the current checkpoints
        name.ends_with("parametrizations.weight.original1")
    }
}
