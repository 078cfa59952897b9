//! Muxing: video packets copied byte for byte with their timestamps, AAC audio fitted to the video's
//! duration, mp4 in → mp4 out and mov in → mov out, rotation kept, original audio replaced or mixed under.

mod common;

use std::path::Path;

use common::{ffprobe, tone, video};
use ffmpeg_next as ff;
use foley_media::{mux, probe, AudioBuffer, Container, MuxOptions, OriginalAudio};
use sha2::{Digest, Sha256};

/// (sha256 of the data, pts in seconds) of every video packet, in file order.
fn video_packets(path: &Path) -> Vec<([u8; 32], Option<f64>)> {
    foley_media::init();
    let mut input = ff::format::input(path).unwrap();
    let stream = input.streams().best(ff::media::Type::Video).unwrap();
    let (index, tb) = (stream.index(), f64::from(stream.time_base()));
    input
        .packets()
        .filter(|(s, _)| s.index() == index)
        .map(|(_, p)| (Sha256::digest(p.data().unwrap_or(&[])).into(), p.pts().map(|t| t as f64 * tb)))
        .collect()
}

fn mux_and_check(name: &'static str, audio_secs: f64, out_ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = video(name);
    let wav = tone(dir.path(), "a.wav", 16_000, 1, audio_secs);
    let out = dir.path().join(format!("out.{out_ext}"));
    let audio = foley_media::read_wav(&wav).unwrap();
    let report = mux(&src, &audio, &out, &MuxOptions::default()).unwrap();

    let (a, b) = (video_packets(&src), video_packets(&out));
    assert_eq!(a.len(), b.len(), "{name}: packet count");
    for (i, (pa, pb)) in a.iter().zip(&b).enumerate() {
        assert_eq!(pa.0, pb.0, "{name}: packet {i} differs");
        let (ta, tb) = (pa.1.unwrap(), pb.1.unwrap());
        assert!((ta - tb).abs() < 1e-6, "{name}: packet {i} pts {ta} vs {tb}");
    }
    assert_eq!(report.video_packets as usize, a.len());

    let (pin, pout) = (probe(&src).unwrap(), probe(&out).unwrap());
    assert_eq!(pout.container, pin.container, "{name}: container");
    assert_eq!(pout.video.rotation, pin.video.rotation, "{name}: rotation");
    assert_eq!(pout.duration_s, pin.duration_s, "{name}: video duration");
    let a = pout.audio.expect("audio track");
    assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("aac", 48_000, 2));
    let audio_dur: f64 = ffprobe(&out, "a:0", "duration").parse().unwrap();
    let one_frame = 1024.0 / 48_000.0;
    assert!((audio_dur - pin.duration_s).abs() <= one_frame, "{name}: audio {audio_dur} vs video {}", pin.duration_s);
    assert_eq!(ffprobe(&out, "a", "codec_name").lines().count(), 1, "{name}: exactly one audio track");
}

#[test]
fn h264_mp4_audio_padded() {
    mux_and_check("h264_mp4", 2.0, "mp4");
}

#[test]
fn h264_mp4_audio_trimmed_and_old_track_replaced() {
    mux_and_check("h264_aac_mp4", 9.0, "mp4");
}

#[test]
fn hevc_and_prores_mov_stay_mov() {
    mux_and_check("hevc_mov", 4.0, "mov");
    mux_and_check("prores_mov", 4.0, "mov");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.mov");
    mux(&video("hevc_mov"), &AudioBuffer::silence(48_000, 2, 100), &out, &MuxOptions::default()).unwrap();
    assert_eq!(probe(&out).unwrap().container, Container::Mov);
    assert_eq!(ffprobe(&out, "v:0", "codec_tag_string"), "hvc1");
}

#[test]
fn rotation_and_vfr_timestamps_kept() {
    mux_and_check("rotated_mp4", 4.0, "mp4");
    mux_and_check("vfr_mp4", 6.0, "mp4");
}

fn rms(path: &Path) -> f32 {
    let info = probe(path).unwrap();
    let a = foley_media::decode_audio_track(path, info.audio.unwrap().index, 48_000, 1).unwrap();
    (a.samples.iter().map(|s| s * s).sum::<f32>() / a.samples.len() as f32).sqrt()
}

#[test]
fn original_audio_replaced_or_mixed_under() {
    let dir = tempfile::tempdir().unwrap();
    let silence = AudioBuffer::silence(48_000, 2, 48_000 * 5);
    let replaced = dir.path().join("r.mp4");
    mux(&video("h264_aac_mp4"), &silence, &replaced, &MuxOptions::default()).unwrap();
    assert!(rms(&replaced) < 1e-3, "replaced track should be silent");
    let mixed = dir.path().join("m.mp4");
    let opts = MuxOptions { original_audio: OriginalAudio::MixUnder { gain_db: 0.0 }, ..MuxOptions::default() };
    mux(&video("h264_aac_mp4"), &silence, &mixed, &opts).unwrap();
    let r = rms(&mixed);
    assert!(r > 0.05, "original sine should be audible, rms {r}");
}

#[test]
fn wrong_extension_and_bad_input_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.mp4");
    let a = AudioBuffer::silence(48_000, 2, 10);
    let e = mux(&video("prores_mov"), &a, &out, &MuxOptions::default()).unwrap_err();
    assert!(e.to_string().contains("must end in .mov"), "{e}");
    let e = mux(&video("text_mp4"), &a, &out, &MuxOptions::default()).unwrap_err();
    assert_eq!(e.as_input().map(|i| i.kind()), Some("unrecognised"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no partial output left behind");
}

#[test]
fn wav_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let buf = AudioBuffer { sample_rate: 44_100, channels: 2, samples: vec![0.0, 0.5, -0.5, 0.25, 1.0, -1.0] };
    for (fmt, tol) in [
        (foley_media::WavFormat::Float32, 0.0),
        (foley_media::WavFormat::Int24, 1e-6),
        (foley_media::WavFormat::Int16, 1e-4),
    ] {
        let p = dir.path().join("x.wav");
        foley_media::write_wav(&p, &buf, fmt).unwrap();
        let back = foley_media::read_wav(&p).unwrap();
        assert_eq!((back.sample_rate, back.channels), (44_100, 2));
        for (a, b) in buf.samples.iter().zip(&back.samples) {
            assert!((a - b).abs() <= tol, "{fmt:?}: {a} vs {b}");
        }
    }
}
