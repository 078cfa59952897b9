//! Audio buffers: wav in and out (hound), resampling and channel mapping (swresample), and decoding the audio
//! track of a video (for mixing the original sound under the new one).

use std::path::Path;

use ffmpeg_next as ff;
use ff::format::sample::{Sample, Type as SampleType};
use ff::software::resampling::Context as Resampler;
use ff::ChannelLayout;

use crate::error::{MediaError, Result};

/// Interleaved f32 PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBuffer {
    pub sample_rate: u32,
    pub channels: u16,
    /// Interleaved samples, `frames() * channels` long, nominally in [-1, 1].
    pub samples: Vec<f32>,
}

/// How a wav file stores its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    #[default]
    Float32,
    Int24,
    Int16,
}

impl AudioBuffer {
    /// A buffer of silence.
    pub fn silence(sample_rate: u32, channels: u16, frames: usize) -> Self {
        AudioBuffer { sample_rate, channels, samples: vec![0.0; frames * channels as usize] }
    }
    /// Number of sample frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1) as usize
    }
    pub fn duration_s(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }
    /// Trims or zero-pads to exactly `frames` sample frames.
    pub fn fit_to(&mut self, frames: usize) {
        self.samples.resize(frames * self.channels as usize, 0.0);
    }
    fn check(&self) -> Result<()> {
        if self.sample_rate == 0 || self.channels == 0 || self.samples.len() % self.channels as usize != 0 {
            return Err(MediaError::Invalid(format!(
                "bad audio buffer: {} Hz, {} channels, {} samples",
                self.sample_rate,
                self.channels,
                self.samples.len()
            )));
        }
        Ok(())
    }
}

/// Writes `audio` as a wav file.
pub fn write_wav(path: &Path, audio: &AudioBuffer, format: WavFormat) -> Result<()> {
    audio.check()?;
    let (bits, sample_format) = match format {
        WavFormat::Float32 => (32, hound::SampleFormat::Float),
        WavFormat::Int24 => (24, hound::SampleFormat::Int),
        WavFormat::Int16 => (16, hound::SampleFormat::Int),
    };
    let spec = hound::WavSpec {
        channels: audio.channels,
        sample_rate: audio.sample_rate,
        bits_per_sample: bits,
        sample_format,
    };
    let wav_err = |source| MediaError::Wav { path: path.to_path_buf(), source };
    let mut w = hound::WavWriter::create(path, spec).map_err(wav_err)?;
    match format {
        WavFormat::Float32 => {
            for &s in &audio.samples {
                w.write_sample(s).map_err(wav_err)?;
            }
        }
        WavFormat::Int24 | WavFormat::Int16 => {
            let max = ((1i32 << (bits - 1)) - 1) as f32;
            for &s in &audio.samples {
                w.write_sample((s.clamp(-1.0, 1.0) * max).round() as i32).map_err(wav_err)?;
            }
        }
    }
    w.finalize().map_err(wav_err)
}

/// Reads a wav file (16/24/32-bit integer or 32-bit float) into f32.
pub fn read_wav(path: &Path) -> Result<AudioBuffer> {
    let wav_err = |source| MediaError::Wav { path: path.to_path_buf(), source };
    let mut r = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = r.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<Vec<_>, _>>().map_err(wav_err)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<Vec<_>, _>>()
                .map_err(wav_err)?
        }
    };
    let buf = AudioBuffer { sample_rate: spec.sample_rate, channels: spec.channels, samples };
    buf.check()?;
    Ok(buf)
}

/// Converts `audio` to `sample_rate` and `channels` (mono is duplicated, other layouts are remixed by
/// swresample's default matrix).
pub fn resample(audio: &AudioBuffer, sample_rate: u32, channels: u16) -> Result<AudioBuffer> {
    audio.check()?;
    if audio.sample_rate == sample_rate && audio.channels == channels {
        return Ok(audio.clone());
    }
    let packed = Sample::F32(SampleType::Packed);
    let mut conv = Converter::new(packed, layout(audio.channels), audio.sample_rate, sample_rate, channels)?;
    let mut input = ff::frame::Audio::new(packed, audio.frames(), layout(audio.channels));
    input.set_rate(audio.sample_rate);
    input.plane_mut::<f32>(0).copy_from_slice(&audio.samples);
    let mut out = AudioBuffer { sample_rate, channels, samples: Vec::new() };
    conv.push(&input, &mut out.samples)?;
    conv.flush(&mut out.samples)?;
    Ok(out)
}

/// Decodes the audio stream `index` of a (validated) video into interleaved f32 at the given rate/channels.
pub fn decode_audio_track(path: &Path, index: usize, sample_rate: u32, channels: u16) -> Result<AudioBuffer> {
    let mut input = crate::open::open_mov(path)?;
    let stream = input
        .stream(index)
        .ok_or_else(|| MediaError::Invalid(format!("no stream {index} in {}", path.display())))?;
    let mut decoder = ff::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
        .map_err(|e| MediaError::ff("opening the audio decoder", e))?;
    let mut out = AudioBuffer { sample_rate, channels, samples: Vec::new() };
    let mut conv: Option<Converter> = None;
    let mut frame = ff::frame::Audio::empty();
    let mut packet = ff::Packet::empty();
    let mut drain = |decoder: &mut ff::decoder::Audio, conv: &mut Option<Converter>, out: &mut Vec<f32>| {
        while decoder.receive_frame(&mut frame).is_ok() {
            if frame.channel_layout().is_empty() {
                frame.set_channel_layout(layout(frame.channels()));
            }
            if conv.is_none() {
                *conv = Some(Converter::new(frame.format(), frame.channel_layout(), frame.rate(), sample_rate, channels)?);
            }
            if let Some(c) = conv.as_mut() {
                c.push(&frame, out)?;
            }
        }
        Ok::<(), MediaError>(())
    };
    loop {
        match crate::open::next_packet(&mut input, &mut packet) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(MediaError::ff("reading audio", e)),
        }
        if packet.stream() != index {
            continue;
        }
        // A damaged audio packet loses a few ms of the original track; it is not worth failing the job.
        if decoder.send_packet(&packet).is_ok() {
            drain(&mut decoder, &mut conv, &mut out.samples)?;
        }
    }
    let _ = decoder.send_eof();
    drain(&mut decoder, &mut conv, &mut out.samples)?;
    if let Some(c) = conv.as_mut() {
        c.flush(&mut out.samples)?;
    }
    Ok(out)
}

/// The default channel layout for a channel count.
pub(crate) fn layout(channels: u16) -> ChannelLayout {
    ChannelLayout::default(i32::from(channels))
}

/// swresample to interleaved f32 at a fixed rate and channel count.
struct Converter {
    inner: Resampler,
    out_rate: u32,
    in_rate: u32,
    out_layout: ChannelLayout,
}

impl Converter {
    fn new(fmt: Sample, in_layout: ChannelLayout, in_rate: u32, out_rate: u32, channels: u16) -> Result<Self> {
        let out_layout = layout(channels);
        let inner = Resampler::get(fmt, in_layout, in_rate, Sample::F32(SampleType::Packed), out_layout, out_rate)
            .map_err(|e| MediaError::ff("creating a resampler", e))?;
        Ok(Converter { inner, out_rate, in_rate, out_layout })
    }

    fn capacity(&self, in_samples: usize) -> usize {
        in_samples * self.out_rate as usize / self.in_rate.max(1) as usize + 512
    }

    fn push(&mut self, input: &ff::frame::Audio, out: &mut Vec<f32>) -> Result<()> {
        let mut o = ff::frame::Audio::new(
            Sample::F32(SampleType::Packed),
            self.capacity(input.samples()),
            self.out_layout.clone(),
        );
        self.inner.run(input, &mut o).map_err(|e| MediaError::ff("resampling", e))?;
        out.extend_from_slice(&o.plane::<f32>(0)[..o.samples() * o.channels() as usize]);
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<f32>) -> Result<()> {
        loop {
            let mut o =
                ff::frame::Audio::new(Sample::F32(SampleType::Packed), self.capacity(4096), self.out_layout.clone());
            self.inner.flush(&mut o).map_err(|e| MediaError::ff("resampling", e))?;
            if o.samples() == 0 {
                return Ok(());
            }
            out.extend_from_slice(&o.plane::<f32>(0)[..o.samples() * o.channels() as usize]);
        }
    }
}
