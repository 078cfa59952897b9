//! `foley mux VIDEO AUDIO.wav -o OUT`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use foley_media::{MuxOptions, OriginalAudio};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The input video (mp4 or mov).
    pub video: PathBuf,
    /// The audio to put in (wav: 16/24/32-bit integer or 32-bit float, any rate).
    pub audio: PathBuf,
    /// Output file: .mp4 for mp4 input, .mov for mov input.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Keep the video's own audio track, mixed under the new audio.
    #[arg(long)]
    pub keep_original_audio: bool,
    /// Gain of the kept original audio, dB.
    #[arg(long, default_value_t = -12.0, allow_hyphen_values = true)]
    pub original_gain_db: f32,
    /// Output audio sample rate, Hz.
    #[arg(long, default_value_t = 48_000)]
    pub sample_rate: u32,
    /// Output audio channels.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub channels: u16,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(8_000..=192_000).contains(&args.sample_rate) {
        anyhow::bail!(foley_media::MediaError::Invalid(format!(
            "--sample-rate {} is out of range (8000–192000 Hz)",
            args.sample_rate
        )));
    }
    let audio = foley_media::read_wav(&args.audio)?;
    let opts = MuxOptions {
        original_audio: if args.keep_original_audio {
            OriginalAudio::MixUnder { gain_db: args.original_gain_db }
        } else {
            OriginalAudio::Replace
        },
        sample_rate: args.sample_rate,
        channels: args.channels,
        ..MuxOptions::default()
    };
    let report = foley_media::mux(&args.video, &audio, &args.output, &opts)
        .with_context(|| format!("muxing {}", args.video.display()))?;
    outln!(
        "wrote {} ({}, {} video packets copied, {:.3} s of {} Hz audio)",
        args.output.display(),
        report.container.extension(),
        report.video_packets,
        report.audio_duration_s,
        report.sample_rate
    );
    Ok(ExitCode::SUCCESS)
}
