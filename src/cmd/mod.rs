//! One module per subcommand.
pub mod bench;
pub mod generate;
pub mod models;
pub mod mux;
pub mod probe;
pub mod serve;

/// The `--dtype` asked for on `device` (`None`: the device's default), checked before anything loads: a dtype the
/// device cannot run is a user error naming `--dtype`.
pub fn dtype_arg(device: &candle_core::Device, asked: Option<&str>) -> anyhow::Result<Option<candle_core::DType>> {
    let Some(asked) = asked else { return Ok(None) };
    let dtype = asked.parse::<candle_core::DType>()?;
    foley_pipeline::FoleyEngine::dtype_for(device, Some(dtype)).map(Some).map_err(|e| match e {
        foley_pipeline::PipelineError::InvalidField { message, .. } => {
            foley_pipeline::PipelineError::invalid("--dtype", message).into()
        }
        other => other.into(),
    })
}
