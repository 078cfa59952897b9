//! Setup shared by the criterion benches: networks at a released variant's real shapes with random weights
//! (weights do not change speed), and a generated test clip.
//!
//! Run: `cargo bench -p foley-benches` (all), or `cargo bench -p foley-benches --bench dit` (one file).
//! `FOLEY_BENCH_VARIANT` picks the MM-DiT variant (default small_16k); `FOLEY_BENCH_SECONDS` the clip length
//! (default 8).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

/// `FOLEY_BENCH_VARIANT`, default `small_16k`.
pub fn variant() -> String {
    std::env::var("FOLEY_BENCH_VARIANT").unwrap_or_else(|_| "small_16k".into())
}

/// `FOLEY_BENCH_SECONDS`, default 8.
pub fn seconds() -> f64 {
    std::env::var("FOLEY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8.0)
}

/// A `VarBuilder` whose variables are created on first use; call [`randomize`] after building the network.
/// Also applies the allocator settings the `foley` binary uses (`foley_kernels::alloc`).
pub fn var_builder(dev: &Device) -> (VarMap, VarBuilder<'static>) {
    foley_kernels::alloc::tune_for_inference();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
    (varmap, vb)
}

/// Normal(0, 0.02) values in every variable (some default initialisations are constants).
pub fn randomize(varmap: &VarMap, dev: &Device) -> candle_core::Result<()> {
    for v in varmap.all_vars() {
        v.set(&Tensor::randn(0f32, 0.02, v.shape(), dev)?)?;
    }
    Ok(())
}

/// Writes a testsrc2 clip (1280x720, 25 fps, h264) of `secs` seconds with the ffmpeg CLI, as `foley bench` does.
pub fn test_clip(path: &Path, secs: f64) -> std::io::Result<()> {
    let src = format!("testsrc2=size=1280x720:rate=25:duration={secs}");
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", &src, "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p"])
        .arg(path)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("ffmpeg exited with {status}")))
    }
}
