//! The foley Engine: loads a model bundle once and turns a generation request (video, prompts, ASMR mode)
//! into audio stems, a loudness-normalised mix and a muxed video. It knows nothing of HTTP: the CLI and the
//! server both reach it through the [`Engine`] trait; [`load_engine`] gives one.

pub mod bundle;
pub mod engine;
pub mod error;
pub mod features;
pub mod fetch;
pub mod import;
pub mod layout;
pub mod license;
pub mod mix;
pub mod random_weights;
pub mod request;
mod run;
pub mod settings;
pub mod stage;
pub mod window;

use std::sync::Arc;

pub use bundle::ModelSpec;
pub use engine::FoleyEngine;
pub use error::PipelineError;
pub use license::{BundleLicenses, Commercial, FileLicense, License};
pub use request::{
    CancelToken, Engine, Output, OutputFormat, Progress, ProgressFn, Request, StageTiming, MAX_PROMPT_CHARS,
};
pub use stage::Stage;
pub use settings::Settings;

/// The device generation runs on: the first CUDA GPU when foley was built with `--features cuda` and one is
/// present, else the CPU. `tiny-test` always runs on the CPU.
pub fn device_for(model: &str) -> candle_core::Device {
    if model == "tiny-test" {
        return candle_core::Device::Cpu;
    }
    candle_core::Device::cuda_if_available(0).unwrap_or(candle_core::Device::Cpu)
}

/// The default model: `large_44k_v2` on a GPU, `small_16k` on the CPU.
pub fn default_model() -> &'static str {
    if device_for("large_44k_v2").is_cpu() {
        "small_16k"
    } else {
        "large_44k_v2"
    }
}

/// Loads the model bundle `model` (a name from `models/`, e.g. `small_16k` or `tiny-test`) once, ready to serve
/// any number of requests from any thread. Missing weights give [`PipelineError::Model`] with the command that
/// downloads them.
pub fn load_engine(model: &str) -> Result<Arc<dyn Engine>, PipelineError> {
    load_engine_from(model, None, None)
}

/// [`load_engine`] using the checkpoints found in `weights_dir` first (`--weights-dir` / `FOLEY_WEIGHTS_DIR`:
/// an MMAudio checkout, a ComfyUI `models/mmaudio` folder or a folder of the official files, used in place),
/// then foley's store of imported weights, then the Hugging Face cache (see [`fetch::locate_role`]), in `dtype`
/// (`None`: the device's default, see [`FoleyEngine::dtype_for`]).
pub fn load_engine_from(
    model: &str,
    weights_dir: Option<&std::path::Path>,
    dtype: Option<candle_core::DType>,
) -> Result<Arc<dyn Engine>, PipelineError> {
    let spec = ModelSpec::find(model)?;
    Ok(Arc::new(FoleyEngine::load_from(spec, device_for(model), dtype, weights_dir)?))
}
