//! `foley probe FILE [--json]`.

use std::path::PathBuf;
use std::process::ExitCode;

use foley_media::{Limits, VideoInfo};
use serde_json::json;

/// Acceptance limits, shared by every command that takes a video.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Shortest accepted video, seconds.
    #[arg(long, env = "FOLEY_MIN_DURATION", default_value_t = 3.0)]
    pub min_duration: f64,
    /// Longest accepted video, seconds.
    #[arg(long, env = "FOLEY_MAX_DURATION", default_value_t = 20.0)]
    pub max_duration: f64,
    /// Largest accepted file, megabytes (10^6 bytes).
    #[arg(long, env = "FOLEY_MAX_FILE_MB", default_value_t = 100.0)]
    pub max_file_mb: f64,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            min_duration_s: self.min_duration,
            max_duration_s: self.max_duration,
            max_file_size: (self.max_file_mb * 1e6) as u64,
            ..Limits::default()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The video to inspect.
    pub file: PathBuf,
    /// Print one JSON object {info, verdict} instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let probed = foley_media::probe(&args.file);
    // A missing or unreadable file is not a verdict on a video: report it as an error.
    if let Err(e @ foley_media::MediaError::Io { .. }) = probed {
        return Err(e.into());
    }
    let verdict = match &probed {
        Ok(info) => foley_media::validate(info, &args.limits.limits()).map_err(foley_media::MediaError::from),
        Err(_) => Ok(()),
    };
    let error = probed.as_ref().err().or(verdict.as_ref().err());
    if args.json {
        let v = json!({
            "file": args.file,
            "info": probed.as_ref().ok(),
            "verdict": match error {
                None => json!({"ok": true}),
                Some(e) => json!({
                    "ok": false,
                    "kind": e.as_input().map(|i| i.kind()).unwrap_or("error"),
                    "reason": e.to_string(),
                }),
            },
        });
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Ok(info) = &probed {
        print_info(info)?;
    }
    match error {
        None => {
            if !args.json {
                outln!("verdict:   ok");
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            if !args.json {
                outln!("verdict:   rejected");
            }
            eprintln!("error: {e}");
            Ok(ExitCode::from(crate::exit::USER_ERROR))
        }
    }
}

fn print_info(i: &VideoInfo) -> anyhow::Result<()> {
    let v = &i.video;
    outln!("container: {} (brand {:?})", i.container.extension(), i.brand.trim());
    outln!("size:      {} bytes", i.file_size);
    outln!("duration:  {} s", i.duration_s);
    outln!(
        "video:     {} {} {}x{} (coded {}x{}, rotation {}°), {:.3} fps{}, {} frames{}",
        v.codec,
        v.pixel_format,
        v.width,
        v.height,
        v.coded_width,
        v.coded_height,
        v.rotation,
        v.fps,
        if v.variable_fps { " (variable)" } else { "" },
        v.frame_count,
        if v.decodable { "" } else { ", NOT decodable" },
    );
    match &i.audio {
        Some(a) => outln!("audio:     {} {} Hz, {} ch", a.codec, a.sample_rate, a.channels),
        None => outln!("audio:     none"),
    }
    Ok(())
}
