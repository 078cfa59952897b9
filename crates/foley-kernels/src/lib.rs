//! CPU kernels for candle tensors, knowing no model: inputs are tensors or slices, outputs tensors. Each falls
//! back to candle's own ops (or says it does not apply) on other devices and dtypes, so networks call them
//! unconditionally.
//!
//! - [`gemm`]: the f32 GEMM on raw matrices; [`cpu_bf16`]: bf16 weights with f32 activations (a blocked
//!   VDPBF16PS GEMM with weights packed once, or widening), and [`cpu_bf16::peak`] for `foley bench --gemm`;
//! - [`linear`]: `nn.Linear` with the weight held as the GEMM reads it; [`conv`] and [`conv_transpose`]: 1-D
//!   convolutions as GEMMs;
//! - [`attention`]: multi-head attention per (batch, head) in place; [`fused`]: a transformer block's
//!   elementwise passes (adaLN modulation, gated residuals, SwiGLU, q/k norm + rotation); [`snake`]: the
//!   anti-aliased Snake activation; [`fast_ops`]: vectorised softmax, GELU, SiLU, exp, sine;
//! - [`alloc`]: the allocator tuning for inference; [`error_bounds`]: the rounding error a product may make and a
//!   NaN-refusing comparison, for the kernels' tests and their callers'.

pub mod alloc;
pub mod attention;
pub mod conv;
pub mod conv_transpose;
pub mod cpu_bf16;
pub mod fast_ops;
pub mod fused;
pub mod gemm;
pub mod linear;
pub mod snake;

pub mod error_bounds;
