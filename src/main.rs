//! `foley`: self-hosted video-to-audio. This binary is the command-line edge: it parses arguments,
//! calls the library crates and turns their errors into one line on stderr and an exit code
//! (2 for a problem with the user's input, 1 for anything else).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod out;
mod cmd;
mod exit;

/// Generated sound effects, ambience and music for 3–20 s videos.
#[derive(Parser, Debug)]
#[command(name = "foley", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a video and say whether foley accepts it (exit 0) or not (exit 2, reason on stderr).
    Probe(cmd::probe::Args),
    /// Put a wav file into a video as its AAC audio track, copying the video stream untouched.
    Mux(cmd::mux::Args),
    /// Generate audio for a video (effects, optional music, ASMR mode) and mux it in.
    Generate(cmd::generate::Args),
    /// List, download or convert model weights.
    Models(cmd::models::Args),
    /// Serve the inference.sh-compatible and Kling-style HTTP APIs and the web page.
    Serve(cmd::serve::Args),
    /// Time every pipeline stage at a variant's real shapes (random weights; no download needed).
    Bench(cmd::bench::Args),
}

fn main() -> ExitCode {
    // before any thread starts: keep candle's per-op buffers in the heap (see foley_kernels::alloc)
    foley_kernels::alloc::tune_for_inference();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FOLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Probe(args) => cmd::probe::run(args),
        Command::Mux(args) => cmd::mux::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Models(args) => cmd::models::run(args),
        Command::Bench(args) => cmd::bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => exit::report(&e),
    }
}
