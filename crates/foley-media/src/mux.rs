//! Putting audio into a video: the video stream is copied packet for packet (never re-encoded), the audio is
//! encoded to AAC, fitted to the video's duration and written into mp4 for mp4 input, mov for mov input.

use std::path::{Path, PathBuf};

use ffmpeg_next as ff;
use ff::format::sample::{Sample, Type as SampleType};
use ff::{ffi, Rational};

use crate::audio::{decode_audio_track, layout, resample, AudioBuffer};
use crate::error::{MediaError, Result};
use crate::probe::VideoInfo;
use crate::sniff::Container;

/// What happens to an audio track the input video already has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OriginalAudio {
    /// Drop it (the default).
    Replace,
    /// Keep it, mixed under the new audio at this gain in dB.
    MixUnder { gain_db: f32 },
}

/// Options of [`mux`].
#[derive(Debug, Clone, PartialEq)]
pub struct MuxOptions {
    pub original_audio: OriginalAudio,
    /// Output audio sample rate and channel count (AAC in the container).
    pub sample_rate: u32,
    pub channels: u16,
    /// AAC bit rate in bit/s.
    pub bit_rate: usize,
}

impl Default for MuxOptions {
    fn default() -> Self {
        MuxOptions { original_audio: OriginalAudio::Replace, sample_rate: 48_000, channels: 2, bit_rate: 192_000 }
    }
}

/// What [`mux`] wrote.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MuxReport {
    pub container: Container,
    pub video_packets: u64,
    pub video_duration_s: f64,
    /// Duration of the PCM that was encoded (= the video's duration, to the sample).
    pub audio_duration_s: f64,
    pub sample_rate: u32,
    pub channels: u16,
}

/// Writes `out`: the video stream of `video_in` copied untouched plus `audio` as AAC, trimmed or padded to
/// the video's duration. The file is written beside `out` and renamed into place only when complete.
pub fn mux(video_in: &Path, audio: &AudioBuffer, out: &Path, opts: &MuxOptions) -> Result<MuxReport> {
    let info = crate::probe(video_in)?;
    check_extension(out, info.container)?;
    let pcm = prepare_audio(video_in, &info, audio, opts)?;
    let tmp = temp_path(out);
    let result = write(video_in, &info, &pcm, &tmp, opts);
    match result {
        Ok(video_packets) => {
            std::fs::rename(&tmp, out).map_err(|e| MediaError::io(out, e))?;
            Ok(MuxReport {
                container: info.container,
                video_packets,
                video_duration_s: info.duration_s,
                audio_duration_s: pcm.duration_s(),
                sample_rate: pcm.sample_rate,
                channels: pcm.channels,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Refuses an output name whose extension says the other container (a `.mp4` for a QuickTime input).
fn check_extension(out: &Path, container: Container) -> Result<()> {
    let ext = out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let ok = match ext.as_deref() {
        None => true,
        Some("mp4" | "m4v") => container == Container::Mp4,
        Some("mov" | "qt") => container == Container::Mov,
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(MediaError::Invalid(format!(
            "output {} must end in .{} because the input video is {}",
            out.display(),
            container.extension(),
            container.extension()
        )))
    }
}

fn temp_path(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Resamples, mixes the original track under if asked, and fits the PCM to the video's duration.
fn prepare_audio(video_in: &Path, info: &VideoInfo, audio: &AudioBuffer, opts: &MuxOptions) -> Result<AudioBuffer> {
    let mut pcm = resample(audio, opts.sample_rate, opts.channels)?;
    let frames = (info.duration_s * f64::from(opts.sample_rate)).round() as usize;
    pcm.fit_to(frames);
    if let (OriginalAudio::MixUnder { gain_db }, Some(a)) = (opts.original_audio, &info.audio) {
        let mut orig = decode_audio_track(video_in, a.index, opts.sample_rate, opts.channels)?;
        orig.fit_to(frames);
        let gain = 10f32.powf(gain_db / 20.0);
        for (s, o) in pcm.samples.iter_mut().zip(&orig.samples) {
            *s = (*s + gain * o).clamp(-1.0, 1.0);
        }
    }
    Ok(pcm)
}

/// Writes the container; returns the number of video packets copied.
fn write(video_in: &Path, info: &VideoInfo, pcm: &AudioBuffer, out: &Path, opts: &MuxOptions) -> Result<u64> {
    let mut input = crate::open::open_mov(video_in)?;
    let mut octx = ff::format::output_as(out, info.container.muxer())
        .map_err(|e| MediaError::ff(format!("creating {}", out.display()), e))?;
    let global_header = octx.format().flags().contains(ff::format::Flags::GLOBAL_HEADER);

    let ist = input.stream(info.video.index).ok_or_else(|| MediaError::Invalid("video stream vanished".into()))?;
    let in_tb = ist.time_base();
    {
        let mut ost = octx
            .add_stream(ff::encoder::find(ff::codec::Id::None))
            .map_err(|e| MediaError::ff("adding the video stream", e))?;
        ost.set_parameters(ist.parameters());
        ost.set_time_base(in_tb);
        ost.set_avg_frame_rate(ist.avg_frame_rate());
        ost.set_metadata(ist.metadata().to_owned());
        // SAFETY: both streams are valid for the duration of this block; side data is copied byte for byte.
        unsafe { copy_stream_extras(ist.as_ptr(), ost.as_mut_ptr(), octx_format(&octx))? };
    }

    let codec = ff::encoder::find(ff::codec::Id::AAC)
        .ok_or_else(|| MediaError::Invalid("this ffmpeg build has no AAC encoder".into()))?;
    let mut enc = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(|e| MediaError::ff("creating the AAC encoder", e))?;
    enc.set_rate(pcm.sample_rate as i32);
    enc.set_channel_layout(layout(pcm.channels));
    enc.set_format(Sample::F32(SampleType::Planar));
    enc.set_bit_rate(opts.bit_rate);
    enc.set_time_base(Rational(1, pcm.sample_rate as i32));
    if global_header {
        enc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
    }
    let mut enc = enc.open_as(codec).map_err(|e| MediaError::ff("opening the AAC encoder", e))?;
    {
        let mut ost = octx.add_stream(codec).map_err(|e| MediaError::ff("adding the audio stream", e))?;
        ost.set_parameters(&enc);
        ost.set_time_base(Rational(1, pcm.sample_rate as i32));
    }
    octx.write_header().map_err(|e| MediaError::ff("writing the header", e))?;
    let (v_tb, a_tb) = (stream_tb(&octx, 0), stream_tb(&octx, 1));

    let audio_packets = encode_aac(&mut enc, pcm, a_tb)?;
    let mut pending = audio_packets.into_iter().peekable();
    let mut packet = ff::Packet::empty();
    let mut copied = 0u64;
    loop {
        match crate::open::next_packet(&mut input, &mut packet) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(MediaError::ff("reading video packets", e)),
        }
        if packet.stream() != info.video.index {
            continue;
        }
        packet.rescale_ts(in_tb, v_tb);
        packet.set_stream(0);
        packet.set_position(-1);
        // Audio up to this video packet's time first, so the file is interleaved as we go.
        let vt = packet.dts().or(packet.pts()).unwrap_or(0) as f64 * f64::from(v_tb);
        while let Some(a) = pending.next_if(|a| a.dts().unwrap_or(0) as f64 * f64::from(a_tb) <= vt) {
            a.write_interleaved(&mut octx).map_err(|e| MediaError::ff("writing audio", e))?;
        }
        packet.write_interleaved(&mut octx).map_err(|e| MediaError::ff("writing video", e))?;
        copied += 1;
    }
    for a in pending {
        a.write_interleaved(&mut octx).map_err(|e| MediaError::ff("writing audio", e))?;
    }
    octx.write_trailer().map_err(|e| MediaError::ff("writing the trailer", e))?;
    Ok(copied)
}

fn octx_format(octx: &ff::format::context::Output) -> *const ffi::AVOutputFormat {
    // SAFETY: the context is valid; oformat is set by output_as.
    unsafe { (*octx.as_ptr()).oformat }
}

fn stream_tb(octx: &ff::format::context::Output, i: usize) -> Rational {
    octx.stream(i).map(|s| s.time_base()).unwrap_or(Rational(1, 90_000))
}

/// Copies what `set_parameters` does not: the display matrix and other stream side data, and keeps the
/// codec tag when the output container maps it to the same codec (e.g. `hvc1` stays `hvc1`).
unsafe fn copy_stream_extras(
    ist: *const ffi::AVStream,
    ost: *mut ffi::AVStream,
    ofmt: *const ffi::AVOutputFormat,
) -> Result<()> {
    let ipar = (*ist).codecpar;
    let opar = (*ost).codecpar;
    let tag = (*ipar).codec_tag;
    (*opar).codec_tag = 0;
    if tag != 0 && !(*ofmt).codec_tag.is_null() && ffi::av_codec_get_id((*ofmt).codec_tag, tag) == (*ipar).codec_id {
        (*opar).codec_tag = tag;
    }
    for i in 0..(*ist).nb_side_data.max(0) as usize {
        let sd = &*(*ist).side_data.add(i);
        let dst = ffi::av_stream_new_side_data(ost, sd.type_, sd.size as _);
        if dst.is_null() {
            return Err(MediaError::ff("copying stream side data", ff::Error::Other { errno: ff::util::error::ENOMEM }));
        }
        std::ptr::copy_nonoverlapping(sd.data, dst, sd.size as usize);
    }
    Ok(())
}

/// Encodes the whole PCM buffer to AAC packets timestamped in `tb`.
fn encode_aac(enc: &mut ff::encoder::Audio, pcm: &AudioBuffer, tb: Rational) -> Result<Vec<ff::Packet>> {
    let frame_size = (enc.frame_size() as usize).max(1);
    let enc_tb = Rational(1, pcm.sample_rate as i32);
    let ch = pcm.channels as usize;
    let mut frame = ff::frame::Audio::new(Sample::F32(SampleType::Planar), frame_size, layout(pcm.channels));
    frame.set_rate(pcm.sample_rate);
    let mut packets = Vec::new();
    let drain = |enc: &mut ff::encoder::Audio, packets: &mut Vec<ff::Packet>| {
        let mut p = ff::Packet::empty();
        while enc.receive_packet(&mut p).is_ok() {
            p.rescale_ts(enc_tb, tb);
            p.set_stream(1);
            packets.push(std::mem::replace(&mut p, ff::Packet::empty()));
        }
    };
    let total = pcm.frames();
    let mut start = 0usize;
    while start < total {
        let n = frame_size.min(total - start);
        if n < frame_size {
            // The last, short frame.
            frame = ff::frame::Audio::new(Sample::F32(SampleType::Planar), n, layout(pcm.channels));
            frame.set_rate(pcm.sample_rate);
        }
        for c in 0..ch {
            let plane = frame.plane_mut::<f32>(c);
            for (i, s) in plane.iter_mut().take(n).enumerate() {
                *s = pcm.samples[(start + i) * ch + c];
            }
        }
        frame.set_pts(Some(start as i64));
        enc.send_frame(&frame).map_err(|e| MediaError::ff("encoding AAC", e))?;
        drain(enc, &mut packets);
        start += n;
    }
    enc.send_eof().map_err(|e| MediaError::ff("finishing AAC", e))?;
    drain(enc, &mut packets);
    Ok(packets)
}
