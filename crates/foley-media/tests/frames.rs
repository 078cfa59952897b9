//! Frame sampling: exact k/fps timing (the reference's "first frame at or after t" rule), rotation, resize
//! modes, and agreement with the ffmpeg command-line tool's own decode + scale.

mod common;

use std::process::Command;

use common::video;
use foley_media::{sample_frames, sample_frames_multi, Resize, SampleSpec};

const SAME: Resize = Resize::Stretch { width: 64, height: 48 };

/// Which source frame (of "numbered_mp4", luma 16 + 2n) a sampled RGB frame shows.
fn source_index(frames: &foley_media::Frames, i: usize) -> usize {
    let r = f64::from(frames.frame(i)[0]);
    (r / (2.0 * 255.0 / 219.0)).round() as usize
}

#[test]
fn timing_follows_k_over_fps() {
    let path = video("numbered_mp4"); // 25 fps, 80 frames, last at 3.16 s
    let specs = [8.0, 25.0, 30.0].map(|fps| SampleSpec { fps, resize: SAME });
    let all = sample_frames_multi(&path, &specs, None).unwrap();
    for (frames, (fps, expected_count)) in all.iter().zip([(8u64, 26usize), (25, 80), (30, 95)]) {
        assert_eq!(frames.count, expected_count, "count at {fps} fps");
        assert_eq!(frames.shape(), [expected_count, 3, 48, 64]);
        for k in 0..frames.count {
            // First source frame n with n/25 >= k/fps.
            let want = (k as u64 * 25).div_ceil(fps) as usize;
            assert_eq!(source_index(frames, k), want, "frame {k} at {fps} fps");
        }
    }
}

#[test]
fn end_limit_is_inclusive() {
    let path = video("numbered_mp4");
    let f = sample_frames(&path, &SampleSpec { fps: 8.0, resize: SAME }, Some(2.0)).unwrap();
    assert_eq!(f.count, 17); // t = 0, 0.125, …, 2.0
    let last = f.count - 1;
    assert_eq!(source_index(&f, last), 50);
}

#[test]
fn variable_frame_rate_picks_by_timestamp() {
    // vfr_mp4 drops frames 10..=24 of every second of a 30 fps source: 1 s has frames at 0..9/30 and 25..29/30.
    let f = sample_frames(&video("vfr_mp4"), &SampleSpec { fps: 4.0, resize: SAME }, None).unwrap();
    assert_eq!(f.count, 24); // 4 fps over 0 … 5.97 s
    // t = 0.5 s falls in the gap: the next frame is the one at 25/30 s, the same as for t = 0.75 s.
    assert_eq!(f.frame(2), f.frame(3));
    assert_ne!(f.frame(1), f.frame(2));
}

fn ffmpeg_rgb(path: &std::path::Path, vf: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-frames:v", "1", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn planar_to_packed(f: &foley_media::Frames, i: usize) -> Vec<u8> {
    let plane = (f.width * f.height) as usize;
    let src = f.frame(i);
    (0..plane).flat_map(|p| [src[p], src[plane + p], src[2 * plane + p]]).collect()
}

fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
}

#[test]
fn rotation_matches_ffmpeg_autorotate() {
    // Stored: left red, right blue; display matrix 90° counter-clockwise, so blue ends up on top.
    let path = video("halves_rotated_mp4");
    let f = sample_frames(&path, &SampleSpec { fps: 8.0, resize: Resize::Stretch { width: 48, height: 64 } }, None)
        .unwrap();
    let px = |x: usize, y: usize| {
        let fr = f.frame(0);
        let plane = 48 * 64;
        [fr[y * 48 + x], fr[plane + y * 48 + x], fr[2 * plane + y * 48 + x]]
    };
    assert!(px(24, 2)[2] > 200 && px(24, 2)[0] < 50, "top should be blue: {:?}", px(24, 2));
    assert!(px(24, 61)[0] > 200 && px(24, 61)[2] < 50, "bottom should be red: {:?}", px(24, 61));
    // And pixel for pixel what ffmpeg's own autorotation shows (same swscale conversion, no scaling).
    let reference = ffmpeg_rgb(&path, "null");
    assert!(max_diff(&planar_to_packed(&f, 0), &reference) <= 1);
}

#[test]
fn short_side_center_crop_matches_ffmpeg() {
    // 320x240 → short side 224: 298x224 (torchvision floors the long side), centre crop x offset round(74/2)=37.
    let path = video("h264_mp4");
    let f = sample_frames(&path, &SampleSpec { fps: 25.0, resize: Resize::ShortSideCenterCrop { size: 224 } }, None)
        .unwrap();
    assert_eq!(f.shape(), [125, 3, 224, 224]);
    let reference = ffmpeg_rgb(&path, "scale=298:224:flags=bicubic,crop=224:224:37:0");
    assert!(max_diff(&planar_to_packed(&f, 0), &reference) <= 2);
}

#[test]
fn stretch_matches_ffmpeg_for_odd_and_uhd_sources() {
    for name in ["odd_mp4", "uhd_mp4", "portrait_mp4", "prores_mov", "hevc_mov"] {
        let path = video(name);
        let f = sample_frames(&path, &SampleSpec { fps: 8.0, resize: Resize::Stretch { width: 96, height: 96 } }, None)
            .unwrap();
        assert_eq!(f.shape()[1..], [3, 96, 96], "{name}");
        let reference = ffmpeg_rgb(&path, "scale=96:96:flags=bicubic");
        assert!(max_diff(&planar_to_packed(&f, 0), &reference) <= 2, "{name}");
    }
}

#[test]
fn f32_view_is_scaled_to_unit_range() {
    let f = sample_frames(&video("numbered_mp4"), &SampleSpec { fps: 1.0, resize: SAME }, None).unwrap();
    let v = f.to_f32();
    assert_eq!(v.len(), f.data.len());
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
}

#[test]
fn bad_requests_and_bad_files_are_errors() {
    let bad = SampleSpec { fps: 0.0, resize: SAME };
    assert!(sample_frames(&video("h264_mp4"), &bad, None).is_err());
    let e = sample_frames(&video("text_mp4"), &SampleSpec { fps: 8.0, resize: SAME }, None).unwrap_err();
    assert_eq!(e.as_input().map(|i| i.kind()), Some("unrecognised"));
}
