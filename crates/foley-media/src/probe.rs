//! `probe`: what a video file is, read by content with the mov/mp4 demuxer only.

use std::io::Read;
use std::path::Path;

use ffmpeg_next as ff;
use serde::Serialize;

use crate::error::{InputError, MediaError, Result};
use crate::sniff::{sniff, Container};

/// What [`probe`] learns about a video file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoInfo {
    /// mp4 or mov, sniffed from the content.
    pub container: Container,
    /// The `ftyp` major brand (`isom`, `qt  `, …), empty when there is none.
    pub brand: String,
    pub file_size: u64,
    /// Presented duration of the video track in seconds (first frame to end of last frame).
    pub duration_s: f64,
    pub video: VideoStreamInfo,
    pub audio: Option<AudioStreamInfo>,
}

/// The video track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoStreamInfo {
    pub index: usize,
    pub codec: String,
    pub pixel_format: String,
    /// Displayed width and height, after rotation.
    pub width: u32,
    pub height: u32,
    /// Stored (coded) width and height, before rotation.
    pub coded_width: u32,
    pub coded_height: u32,
    /// Clockwise rotation in degrees (0, 90, 180 or 270) applied for display.
    pub rotation: u32,
    /// Average frame rate: frames / duration.
    pub fps: f64,
    /// Whether frame intervals vary by more than 5 %.
    pub variable_fps: bool,
    pub frame_count: u64,
    /// Whether the first frame decodes; `decode_error` says why not.
    pub decodable: bool,
    pub decode_error: Option<String>,
}

/// The first audio track, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioStreamInfo {
    pub index: usize,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
}

impl VideoInfo {
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }
}

/// Reads `path` and describes it. Fails with an [`InputError`] when the file is not an mp4/mov video that
/// ffmpeg can read at all (empty, other container, playlist, corrupt, no video stream); limits (duration, size,
/// dimensions, …) are checked by [`crate::validate`].
pub fn probe(path: &Path) -> Result<VideoInfo> {
    let file_size = std::fs::metadata(path).map_err(|e| MediaError::io(path, e))?.len();
    let mut head = Vec::with_capacity(256);
    std::fs::File::open(path)
        .and_then(|f| f.take(256).read_to_end(&mut head))
        .map_err(|e| MediaError::io(path, e))?;
    let container = sniff(&head)?;
    let brand = if head.get(4..8) == Some(b"ftyp") {
        String::from_utf8_lossy(&head[8..12]).into_owned()
    } else {
        String::new()
    };

    let mut input = crate::open::open_mov(path)?;
    let vstream = input
        .streams()
        .filter(|s| s.parameters().medium() == ff::media::Type::Video)
        .find(|s| !s.disposition().contains(ff::format::stream::Disposition::ATTACHED_PIC))
        .ok_or(InputError::NoVideo)?;
    let vindex = vstream.index();
    let time_base = vstream.time_base();
    let header_duration = (vstream.duration() > 0).then(|| vstream.duration());
    let rotation = rotation_of(&vstream);
    let params = vstream.parameters();
    let codec = params.id().name().to_string();
    let audio = input
        .streams()
        .find(|s| s.parameters().medium() == ff::media::Type::Audio)
        .map(|s| audio_info(&s));

    let mut decoder = ff::codec::context::Context::from_parameters(params)
        .and_then(|c| c.decoder().video())
        .map_err(|e| InputError::Undecodable { codec: codec.clone(), detail: e.to_string() })?;
    let (coded_width, coded_height) = (decoder.width(), decoder.height());
    let pixel_format = pixel_name(decoder.format());

    let scan = scan_packets(&mut input, vindex, &mut decoder)?;
    if scan.timestamps.is_empty() {
        return Err(InputError::Corrupt { detail: "the video track has no frames".into() }.into());
    }
    let secs = |ticks: i64| ticks as f64 * f64::from(time_base);
    let (duration_ticks, variable_fps) = frame_timing(&scan);
    if let Some(header) = header_duration {
        // A faststart file cut short still has its full header; its data ends early.
        if (duration_ticks as f64) < 0.9 * header as f64 {
            return Err(InputError::Corrupt {
                detail: format!(
                    "its frames end at {:.2} s but its header says {:.2} s",
                    secs(duration_ticks),
                    secs(header)
                ),
            }
            .into());
        }
    }
    let duration_s = (secs(duration_ticks) * 1000.0).round() / 1000.0;
    let frame_count = scan.timestamps.len() as u64;
    let fps = if duration_s > 0.0 { frame_count as f64 / secs(duration_ticks) } else { 0.0 };
    let (width, height) =
        if rotation % 180 == 90 { (coded_height, coded_width) } else { (coded_width, coded_height) };

    Ok(VideoInfo {
        container,
        brand,
        file_size,
        duration_s,
        video: VideoStreamInfo {
            index: vindex,
            codec,
            pixel_format,
            width,
            height,
            coded_width,
            coded_height,
            rotation,
            fps,
            variable_fps,
            frame_count,
            decodable: scan.decode_error.is_none(),
            decode_error: scan.decode_error,
        },
        audio,
    })
}

/// Presentation timestamps of every video packet, plus whether the first frame decoded.
struct Scan {
    timestamps: Vec<i64>,
    last_duration: i64,
    decode_error: Option<String>,
}

/// Demuxes the whole file (no decoding beyond the first frame): frame count, timing and truncation.
fn scan_packets(
    input: &mut ff::format::context::Input,
    vindex: usize,
    decoder: &mut ff::decoder::Video,
) -> Result<Scan> {
    let mut scan = Scan { timestamps: Vec::new(), last_duration: 0, decode_error: None };
    let mut decoded = false;
    let mut frame = ff::frame::Video::empty();
    let mut packet = ff::Packet::empty();
    loop {
        match crate::open::next_packet(input, &mut packet) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(InputError::Corrupt { detail: e.to_string() }.into()),
        }
        if packet.stream() != vindex {
            continue;
        }
        if packet.is_corrupt() {
            return Err(InputError::Corrupt { detail: "a video packet is damaged".into() }.into());
        }
        if let Some(ts) = packet.pts().or(packet.dts()) {
            scan.timestamps.push(ts);
            scan.last_duration = packet.duration();
        }
        if !decoded && scan.decode_error.is_none() {
            match decoder.send_packet(&packet) {
                Ok(()) => decoded = decoder.receive_frame(&mut frame).is_ok(),
                Err(e) => scan.decode_error = Some(e.to_string()),
            }
        }
    }
    if !decoded && scan.decode_error.is_none() {
        let _ = decoder.send_eof();
        if decoder.receive_frame(&mut frame).is_err() {
            scan.decode_error = Some("no frame could be decoded".into());
        }
    }
    Ok(scan)
}

/// Total presented duration in stream ticks and whether the frame intervals vary.
fn frame_timing(scan: &Scan) -> (i64, bool) {
    let mut ts = scan.timestamps.clone();
    ts.sort_unstable();
    let deltas: Vec<i64> = ts.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0).collect();
    let mut sorted = deltas.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    let last = if scan.last_duration > 0 { scan.last_duration } else { median };
    let span = ts.last().copied().unwrap_or(0) - ts.first().copied().unwrap_or(0) + last;
    let slack = (median as f64 * 0.05).max(1.0);
    let variable = deltas.iter().any(|d| (*d - median).abs() as f64 > slack);
    (span, variable)
}

/// Clockwise display rotation from the stream's display matrix, snapped to a multiple of 90°.
fn rotation_of(stream: &ff::format::stream::Stream) -> u32 {
    for sd in stream.side_data() {
        if sd.kind() == ff::codec::packet::side_data::Type::DisplayMatrix && sd.data().len() >= 36 {
            // SAFETY: a display matrix is nine i32 values; the length was checked above.
            let ccw = unsafe { ff::ffi::av_display_rotation_get(sd.data().as_ptr() as *const i32) };
            if ccw.is_finite() {
                let cw = (-ccw / 90.0).round() as i64 * 90;
                return cw.rem_euclid(360) as u32;
            }
        }
    }
    0
}

fn audio_info(stream: &ff::format::stream::Stream) -> AudioStreamInfo {
    let params = stream.parameters();
    let (sample_rate, channels) = ff::codec::context::Context::from_parameters(params.clone())
        .and_then(|c| c.decoder().audio())
        .map(|a| (a.rate(), a.channels()))
        .unwrap_or((0, 0));
    AudioStreamInfo { index: stream.index(), codec: params.id().name().to_string(), sample_rate, channels }
}

fn pixel_name(p: ff::format::Pixel) -> String {
    // SAFETY: av_get_pix_fmt_name returns a static string or null.
    unsafe {
        let name = ff::ffi::av_get_pix_fmt_name(p.into());
        if name.is_null() {
            "unknown".into()
        } else {
            std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}
