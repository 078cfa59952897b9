//! Probe + validate over the generated corpus: the exact verdict and reason kind for every case.

mod common;

use common::video;
use foley_media::{check, probe, Container, Limits};

fn verdict(name: &'static str) -> Result<foley_media::VideoInfo, String> {
    check(&video(name), &Limits::default()).map_err(|e| {
        let kind = e.as_input().map(|i| i.kind()).unwrap_or("other").to_string();
        eprintln!("{name}: {e}");
        kind
    })
}

fn accepted(name: &'static str) -> foley_media::VideoInfo {
    verdict(name).unwrap_or_else(|k| panic!("{name} should be accepted, got {k}"))
}

fn rejected(name: &'static str, kind: &str) {
    match verdict(name) {
        Ok(_) => panic!("{name} should be rejected as {kind}, but was accepted"),
        Err(k) => assert_eq!(k, kind, "{name}"),
    }
}

#[test]
fn h264_mp4() {
    let i = accepted("h264_mp4");
    assert_eq!(i.container, Container::Mp4);
    assert_eq!((i.video.codec.as_str(), i.video.width, i.video.height), ("h264", 320, 240));
    assert_eq!(i.duration_s, 5.0);
    assert_eq!(i.video.frame_count, 125);
    assert!((i.video.fps - 25.0).abs() < 1e-9 && !i.video.variable_fps);
    assert!(!i.has_audio());
}

#[test]
fn h264_with_aac_track() {
    let i = accepted("h264_aac_mp4");
    let a = i.audio.expect("audio track");
    assert_eq!((a.codec.as_str(), a.sample_rate, a.channels), ("aac", 44100, 1));
}

#[test]
fn hevc_mov() {
    let i = accepted("hevc_mov");
    assert_eq!((i.container, i.video.codec.as_str(), i.brand.as_str()), (Container::Mov, "hevc", "qt  "));
}

#[test]
fn prores_mov() {
    let i = accepted("prores_mov");
    assert_eq!((i.container, i.video.codec.as_str()), (Container::Mov, "prores"));
    assert_eq!(i.duration_s, 3.52); // 88 frames at 25 fps: testsrc2 rounds 3.5 s up to a whole frame
}

#[test]
fn rotated() {
    let i = accepted("rotated_mp4");
    assert_eq!(i.video.rotation, 270, "display matrix of 90° counter-clockwise = 270° clockwise");
    assert_eq!((i.video.width, i.video.height), (240, 320));
    assert_eq!((i.video.coded_width, i.video.coded_height), (320, 240));
}

#[test]
fn portrait_odd_60fps_4k() {
    let p = accepted("portrait_mp4");
    assert_eq!((p.video.width, p.video.height), (240, 426));
    let o = accepted("odd_mp4");
    assert_eq!((o.video.width, o.video.height), (321, 241));
    let f = accepted("fps60_mp4");
    assert!((f.video.fps - 60.0).abs() < 1e-6, "{}", f.video.fps);
    let u = accepted("uhd_mp4");
    assert_eq!((u.video.width, u.video.height), (3840, 2160));
}

#[test]
fn variable_frame_rate() {
    let i = accepted("vfr_mp4");
    assert!(i.video.variable_fps, "{:?}", i.video);
    assert!(i.duration_s > 5.0 && i.duration_s <= 6.0, "{}", i.duration_s);
}

#[test]
fn exact_bounds_are_inclusive() {
    assert_eq!(accepted("exact3_mp4").duration_s, 3.0);
    assert_eq!(accepted("exact20_mp4").duration_s, 20.0);
}

#[test]
fn duration_out_of_range() {
    rejected("short_mp4", "duration");
    rejected("long_mp4", "duration");
    let e = check(&video("short_mp4"), &Limits::default()).unwrap_err();
    assert_eq!(e.to_string(), "video is 2.52 s long; it must be between 3 and 20 s");
}

#[test]
fn truncated_files() {
    rejected("truncated_mp4", "corrupt");
    rejected("truncated_faststart_mp4", "corrupt");
}

#[test]
fn empty_and_text() {
    rejected("empty_mp4", "empty");
    rejected("text_mp4", "unrecognised");
}

#[test]
fn other_containers_renamed() {
    rejected("mkv_as_mp4", "wrong_container");
    rejected("webm_as_mov", "wrong_container");
    let e = check(&video("webm_as_mov"), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("WebM"), "{e}");
}

#[test]
fn audio_only() {
    rejected("audio_only_mp4", "no_video");
}

#[test]
fn still_image() {
    rejected("still_mov", "still_image");
}

#[test]
fn playlists_are_never_opened() {
    rejected("ffconcat_mp4", "playlist");
    rejected("hls_mov", "playlist");
}

#[test]
fn configurable_limits() {
    let small = Limits { max_file_size: 1000, ..Limits::default() };
    let e = check(&video("h264_mp4"), &small).unwrap_err();
    assert_eq!(e.as_input().map(|i| i.kind()), Some("too_large"));
    let tiny_side = Limits { max_side: 200, ..Limits::default() };
    let e = check(&video("h264_mp4"), &tiny_side).unwrap_err();
    assert_eq!(e.as_input().map(|i| i.kind()), Some("dimensions"));
    let slow = Limits { max_fps: 30.0, ..Limits::default() };
    let e = check(&video("fps60_mp4"), &slow).unwrap_err();
    assert_eq!(e.as_input().map(|i| i.kind()), Some("frame_rate"));
}

#[test]
fn damaged_copies_never_panic() {
    // Deterministic damage of a valid file: truncations and byte flips. Any verdict is fine; a panic is not.
    let bytes = std::fs::read(video("h264_aac_mp4")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.mp4");
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..40 {
        let mut b = bytes.clone();
        if round % 2 == 0 {
            b.truncate((bytes.len() * round / 40).max(1));
        } else {
            for _ in 0..16 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % b.len();
                b[i] = (seed >> 32) as u8;
            }
        }
        std::fs::write(&path, &b).unwrap();
        let _ = probe(&path).map(|i| foley_media::validate(&i, &Limits::default()));
    }
}
