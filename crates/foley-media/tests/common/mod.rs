//! A corpus of test videos, made on demand with the `ffmpeg` command-line tool into one temp dir per test
//! binary. Each entry is generated once, the first time a test asks for it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The corpus directory and one once-cell per entry; the map's lock is held only to find the cell, so an
/// entry made from another (a truncated copy, a playlist naming a video) can ask for it while being made.
struct Corpus {
    dir: tempfile::TempDir,
    made: Mutex<HashMap<&'static str, Arc<OnceLock<PathBuf>>>>,
}

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| Corpus { dir: tempfile::tempdir().expect("temp dir"), made: Mutex::new(HashMap::new()) })
}

/// Runs the ffmpeg CLI quietly; panics with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("the ffmpeg command-line tool must be installed (scripts/setup)");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A small synthetic clip: testsrc2 at `size` and `fps` for `secs`, h264 unless `codec_args` say otherwise.
fn clip(out: &Path, size: &str, fps: u32, secs: f64, codec_args: &[&str], extra_in: &[&str]) {
    let src = format!("testsrc2=size={size}:rate={fps}:duration={secs}");
    let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into(), src];
    args.extend(extra_in.iter().map(|s| s.to_string()));
    args.extend(codec_args.iter().map(|s| s.to_string()));
    args.push(out.to_string_lossy().into_owned());
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

const H264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

/// The path of corpus entry `name`, generating it if needed.
pub fn video(name: &'static str) -> PathBuf {
    let c = corpus();
    let cell = c.made.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default().clone();
    cell.get_or_init(|| {
        let dir = c.dir.path().to_path_buf();
        let ext = if name.ends_with("_mov") { "mov" } else { "mp4" };
        let path = dir.join(format!("{name}.{ext}"));
        make(name, &path, &dir);
        path
    })
    .clone()
}

fn make(name: &str, p: &Path, dir: &Path) {
    let sine = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"];
    match name {
        "h264_mp4" => clip(p, "320x240", 25, 5.0, H264, &[]),
        "h264_aac_mp4" => clip(p, "320x240", 25, 5.0, &[H264, &["-c:a", "aac", "-shortest"]].concat(), &sine),
        "hevc_mov" => clip(p, "320x240", 25, 4.0, &["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1",
            "-x265-params", "log-level=error"], &[]),
        "prores_mov" => clip(p, "320x240", 25, 3.5, &["-c:v", "prores_ks", "-profile:v", "0"], &[]),
        "rotated_mp4" => rotate(&video("h264_mp4"), p),
        "portrait_mp4" => clip(p, "240x426", 30, 4.0, H264, &[]),
        "odd_mp4" => clip(p, "320x240", 25, 4.0, &["-vf", "scale=321:241", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv444p"], &[]),
        "fps60_mp4" => clip(p, "320x240", 60, 4.0, H264, &[]),
        "uhd_mp4" => clip(p, "3840x2160", 10, 3.2, H264, &[]),
        "vfr_mp4" => ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=6",
            "-vf", "select='not(between(mod(n,30),10,24))'", "-fps_mode", "vfr",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", &p.to_string_lossy()]),
        "exact3_mp4" => clip(p, "160x120", 25, 3.0, H264, &[]),
        "exact20_mp4" => clip(p, "160x120", 25, 20.0, H264, &[]),
        "short_mp4" => clip(p, "160x120", 25, 2.5, H264, &[]),
        "long_mp4" => clip(p, "160x120", 25, 20.5, H264, &[]),
        "faststart_mp4" => clip(p, "320x240", 25, 5.0, &[H264, &["-movflags", "+faststart"]].concat(), &[]),
        "truncated_mp4" => truncate(&video("h264_mp4"), p, 0.5),
        "truncated_faststart_mp4" => truncate(&video("faststart_mp4"), p, 0.5),
        "empty_mp4" => std::fs::write(p, b"").unwrap(),
        "text_mp4" => std::fs::write(p, "This is not a video, just some text renamed to .mp4\n").unwrap(),
        "mkv_as_mp4" => clip(p, "160x120", 25, 4.0, &[H264, &["-f", "matroska"]].concat(), &[]),
        "webm_as_mov" => clip(p, "160x120", 25, 4.0, &["-c:v", "libvpx", "-deadline", "realtime", "-f", "webm"], &[]),
        "audio_only_mp4" => ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=5",
            "-c:a", "aac", &p.to_string_lossy()]),
        "still_mov" => ffmpeg(&["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "1",
            "-c:v", "png", &p.to_string_lossy()]),
        "ffconcat_mp4" => {
            let target = video("h264_mp4");
            std::fs::write(p, format!("ffconcat version 1.0\nfile '{}'\n", target.display())).unwrap()
        }
        "hls_mov" => {
            let target = video("h264_mp4");
            std::fs::write(p, format!(
                "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXTINF:5.0,\nfile://{}\n#EXT-X-ENDLIST\n",
                target.display())).unwrap()
        }
        // Frame n has luma 16 + 2n, so a sampled frame tells which source frame it was.
        "numbered_mp4" => ffmpeg(&["-f", "lavfi", "-i", "color=c=black:size=64x48:rate=25:duration=3.2",
            "-vf", "geq=lum='16+2*N':cb=128:cr=128", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
            "-pix_fmt", "yuv444p", &p.to_string_lossy()]),
        // Left half red, right half blue, stored landscape.
        "halves_mp4" => ffmpeg(&["-f", "lavfi", "-i", "color=c=red:size=64x48:rate=25:duration=3.2",
            "-vf", "drawbox=x=32:y=0:w=32:h=48:color=blue:t=fill",
            "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p", &p.to_string_lossy()]),
        "halves_rotated_mp4" => rotate(&video("halves_mp4"), p),
        _ => panic!("unknown corpus entry {name} (in {})", dir.display()),
    }
}

/// A stream copy of `src` carrying the legacy `rotate=90` tag, which ffmpeg 5.1's muxer turns into a display
/// matrix of 90° counter-clockwise (ffprobe: rotation=90; players show it turned 270° clockwise).
fn rotate(src: &Path, dst: &Path) {
    ffmpeg(&["-i", &src.to_string_lossy(), "-c", "copy", "-metadata:s:v:0", "rotate=90", &dst.to_string_lossy()]);
}

fn truncate(src: &Path, dst: &Path, keep: f64) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
}

/// A wav of a sine tone.
pub fn tone(dir: &Path, name: &str, rate: u32, channels: u16, secs: f64) -> PathBuf {
    let p = dir.join(name);
    let frames = (secs * rate as f64) as usize;
    let samples: Vec<f32> = (0..frames)
        .flat_map(|i| {
            let s = 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / rate as f32).sin();
            std::iter::repeat_n(s, channels as usize)
        })
        .collect();
    let buf = foley_media::AudioBuffer { sample_rate: rate, channels, samples };
    foley_media::write_wav(&p, &buf, foley_media::WavFormat::Float32).unwrap();
    p
}

/// `ffprobe` a stream entry of a file, e.g. ("a:0", "duration").
pub fn ffprobe(path: &Path, stream: &str, entry: &str) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", &format!("stream={entry}"),
            "-of", "default=noprint_wrappers=1:nokey=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
