//! `foley models list|download|import|convert`: what model bundles exist, which are on disk and under which
//! licenses; fetching one into the Hugging Face cache (licenses first, then a progress bar, checksums); importing
//! weights people already have (an MMAudio checkout, a ComfyUI `models/mmaudio` folder); converting a `.pth`
//! checkpoint to safetensors once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use foley_pipeline::bundle::{ModelSpec, ROLES};
use foley_pipeline::Commercial;
use foley_pipeline::{fetch, import};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show every model bundle, whether its weights are present and their licenses (commercial use or not).
    List {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
        /// Only the names of the bundles whose weights are all present, one per line: the default model first
        /// (when present), then tiny-test, then the others (scripts pick the first line).
        #[arg(long, conflicts_with = "json")]
        present: bool,
        /// Also look in this folder first (as generate and serve do with it).
        #[arg(long, env = "FOLEY_WEIGHTS_DIR")]
        weights_dir: Option<PathBuf>,
    },
    /// Download a bundle's weights into the Hugging Face cache (default: the default model of this machine), after
    /// printing their licenses.
    Download {
        /// small_16k, small_44k, medium_44k or large_44k_v2.
        variant: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Import weights you already have: an MMAudio checkout (weights/, ext_weights/), a ComfyUI models/mmaudio
    /// folder (Kijai/MMAudio_safetensors files, nvidia/bigvgan_v2_44khz_128band_512x/) or a folder of the
    /// official files. Every file is checked (published md5, keys, shapes, finite values) before it is placed.
    Import {
        /// The folder holding the weights.
        path: PathBuf,
        /// Only this variant (default: every variant whose generator network is in PATH).
        #[arg(long)]
        variant: Option<String>,
        /// Symlink the files into foley's store (the default; the originals must stay where they are).
        #[arg(long, conflicts_with = "copy")]
        link: bool,
        /// Copy the files into foley's store instead of linking them.
        #[arg(long)]
        copy: bool,
        /// One JSON report on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Convert a `.pth` / `.pt` checkpoint to safetensors (memory-mapped loading), tensors unchanged.
    Convert {
        /// The checkpoint to read.
        input: PathBuf,
        /// The safetensors file to write (default: the input with a .safetensors extension).
        output: Option<PathBuf>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::List { json, present, weights_dir } => list(json, present, weights_dir.as_deref()),
        Command::Import { path, variant, link: _, copy, json } => {
            let how = if copy { import::Placement::Copy } else { import::Placement::Link };
            import_weights(&path, variant.as_deref(), how, json)
        }
        Command::Download { variant, quiet } => download(variant, quiet),
        Command::Convert { input, output } => {
            let output = output.unwrap_or_else(|| input.with_extension("safetensors"));
            let n = foley_models::weights::convert_pth_to_safetensors(&input, &output)
                .with_context(|| format!("converting {}", input.display()))?;
            outln!("{}: {n} tensors", output.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn import_weights(path: &Path, variant: Option<&str>, how: import::Placement, json: bool) -> anyhow::Result<ExitCode> {
    let reports = import::import(path, variant, how)?;
    let refused: Vec<&str> =
        reports.iter().flat_map(|r| &r.files).filter_map(|f| f.refused.as_deref()).collect();
    if json {
        outln!("{}", serde_json::to_string(&reports)?);
    } else {
        outln!("store: {}", fetch::store_dir().display());
        for r in &reports {
            for f in &r.files {
                match (&f.placed, &f.refused) {
                    (Some(p), _) => {
                        let sum = if f.checksum_verified { ", checksum ok" } else { "" };
                        outln!("{:<13} {:<12} {} -> {} (keys, shapes, values ok{sum})", r.variant, f.role,
                                 f.source.display(), p.display());
                    }
                    (None, Some(why)) => outln!("{:<13} {:<12} REFUSED {why}", r.variant, f.role),
                    (None, None) => {}
                }
            }
            if r.complete {
                outln!("{:<13} complete", r.variant);
            } else {
                let names: Vec<&str> = r.missing.iter().map(|(_, n)| n.as_str()).collect();
                outln!("{:<13} missing {}: run `{}`", r.variant, names.join(", "),
                         r.fetch_command.as_deref().unwrap_or("foley models download"));
            }
        }
    }
    if let Some(first) = refused.first() {
        eprintln!("error: {first}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(json: bool, present_only: bool, weights_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut licenses = Vec::new();
    for spec in ModelSpec::builtin() {
        let mut files = Vec::new();
        for role in ROLES {
            let f = &spec.files[role];
            let path = fetch::locate_role(&spec, role, weights_dir)?;
            files.push(serde_json::json!({"role": role, "name": f.name(), "present": path.is_some(), "path": path}));
        }
        let present = files.iter().all(|f| f["present"] == true);
        let lic = spec.licenses();
        rows.push(serde_json::json!({
            "name": spec.name, "mode": spec.mode, "sample_rate": spec.sample_rate(), "noise": spec.noise,
            "description": spec.description, "present": present, "files": files,
            "default": spec.name == foley_pipeline::default_model(), "licenses": &lic,
        }));
        licenses.push(lic);
    }
    if json {
        outln!("{}", serde_json::Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if present_only {
        let mut names: Vec<(u8, &str)> = rows
            .iter()
            .filter(|r| r["present"] == true)
            .map(|r| {
                let rank = if r["default"] == true { 0 } else if r["name"] == "tiny-test" { 1 } else { 2 };
                (rank, r["name"].as_str().unwrap_or("?"))
            })
            .collect();
        names.sort_by_key(|(rank, _)| *rank);
        for (_, n) in names {
            outln!("{n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(d) = weights_dir {
        outln!("weights dir: {}", d.display());
    }
    outln!("store: {}", fetch::store_dir().display());
    outln!("cache: {}{}", fetch::cache_dir().display(), if fetch::offline() { " (HF_HUB_OFFLINE)" } else { "" });
    outln!("{:<13} {:<4} {:<15} {:<52} weights", "model", "mode", "use", "licenses");
    for (r, l) in rows.iter().zip(&licenses) {
        let missing: Vec<&str> =
            r["files"].as_array().into_iter().flatten().filter(|f| f["present"] != true).filter_map(|f| f["name"].as_str()).collect();
        let state = if missing.is_empty() { "present".to_string() } else { format!("missing {}", missing.join(", ")) };
        let mark = if r["default"] == true { " (default here)" } else { "" };
        let usage = match l.commercial {
            Commercial::Yes => "commercial ok",
            Commercial::No => "non-commercial",
            Commercial::Unclear => "unconfirmed",
        };
        outln!(
            "{:<13} {:<4} {usage:<15} {:<52} {state}{mark}",
            r["name"].as_str().unwrap_or("?"),
            r["mode"].as_str().unwrap_or("?"),
            l.labels().join(",")
        );
    }
    outln!("use, licenses: the weights' own terms (foley's license covers its code only); per file: --json");
    outln!("download one with: foley models download <name>");
    Ok(ExitCode::SUCCESS)
}

/// What `models download` prints before fetching: the bundle's notice, each file's license with its terms and the
/// one line on commercial use, and the non-commercial condition spelled out.
fn print_licenses(spec: &ModelSpec) -> anyhow::Result<()> {
    let l = spec.licenses();
    outln!("{}", l.notice);
    for f in &l.files {
        match &f.license {
            Some(lic) => {
                outln!("  {:<12} {:<30} {} <{}>", f.role, f.file, lic.label(), lic.url);
                outln!("  {:<12} {}", "", lic.note);
            }
            None => outln!("  {:<12} {:<30} no license recorded in {}.toml", f.role, f.file, spec.name),
        }
    }
    if let Some(c) = &l.condition {
        outln!("{c}");
    }
    Ok(())
}

fn download(variant: Option<String>, quiet: bool) -> anyhow::Result<ExitCode> {
    let name = variant.unwrap_or_else(|| foley_pipeline::default_model().to_string());
    let spec = ModelSpec::find(&name)?;
    print_licenses(&spec)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{msg:<28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let fetched = fetch::download(&spec, bar.clone())?;
    bar.finish_and_clear();
    for f in &fetched {
        let how = match (f.cached, f.verified) {
            (true, _) => "already present",
            (false, true) => "downloaded, checksum ok",
            (false, false) => "downloaded (no published checksum)",
        };
        outln!("{:<12} {} ({how})", f.role, f.path.display());
    }
    Ok(ExitCode::SUCCESS)
}
