//! Sequence lengths from the clip duration, ported from `mmaudio/model/sequence_config.py` of
//! github.com/hkchengrex/MMAudio at commit 974010a026c731054592d8f777218bd9d85a6c24. The networks were trained on
//! 8 s; the reference runs other durations by recomputing these lengths (`MMAudio.update_seq_lengths`), and so
//! does [`crate::mmaudio::MMAudio`], which reads them from its inputs.

use serde::{Deserialize, Serialize};

/// Frame rates and strides of the audio latents and of both video feature streams.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequenceConfig {
    pub duration: f64,
    pub sampling_rate: usize,
    /// Mel hop length (256 at 16 kHz, 512 at 44.1 kHz).
    pub spectrogram_frame_rate: usize,
    pub latent_downsample_rate: usize,
    pub clip_frame_rate: usize,
    pub sync_frame_rate: usize,
    pub sync_num_frames_per_segment: usize,
    pub sync_step_size: usize,
    pub sync_downsample_rate: usize,
}

impl SequenceConfig {
    fn new(duration: f64, sampling_rate: usize, spectrogram_frame_rate: usize) -> Self {
        Self {
            duration,
            sampling_rate,
            spectrogram_frame_rate,
            latent_downsample_rate: 2,
            clip_frame_rate: 8,
            sync_frame_rate: 25,
            sync_num_frames_per_segment: 16,
            sync_step_size: 8,
            sync_downsample_rate: 2,
        }
    }
    /// `CONFIG_16K` at another duration.
    pub fn mode_16k(duration: f64) -> Self {
        Self::new(duration, 16_000, 256)
    }
    /// `CONFIG_44K` at another duration.
    pub fn mode_44k(duration: f64) -> Self {
        Self::new(duration, 44_100, 512)
    }

    /// `ceil(duration * sr / hop / 2)`.
    pub fn latent_seq_len(&self) -> usize {
        (self.duration * self.sampling_rate as f64
            / self.spectrogram_frame_rate as f64
            / self.latent_downsample_rate as f64)
            .ceil() as usize
    }
    /// `int(duration * 8)` CLIP frames.
    pub fn clip_seq_len(&self) -> usize {
        (self.duration * self.clip_frame_rate as f64) as usize
    }
    /// Number of 16-frame Synchformer segments (stride 8) in the clip.
    pub fn sync_segments(&self) -> usize {
        let frames = self.duration * self.sync_frame_rate as f64;
        let n = ((frames - self.sync_num_frames_per_segment as f64) / self.sync_step_size as f64).floor() + 1.0;
        n.max(0.0) as usize
    }
    /// Synchformer tokens: 8 per segment.
    pub fn sync_seq_len(&self) -> usize {
        self.sync_segments() * self.sync_num_frames_per_segment / self.sync_downsample_rate
    }
    /// Waveform samples the vocoder produces for `latent_seq_len` latents.
    pub fn num_audio_frames(&self) -> usize {
        self.latent_seq_len() * self.spectrogram_frame_rate * self.latent_downsample_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_lengths_match_the_reference_asserts() {
        let c = SequenceConfig::mode_16k(8.0);
        assert_eq!(
            (
                c.latent_seq_len(),
                c.clip_seq_len(),
                c.sync_seq_len(),
                c.num_audio_frames()
            ),
            (250, 64, 192, 128_000)
        );
        let c = SequenceConfig::mode_44k(8.0);
        assert_eq!(
            (
                c.latent_seq_len(),
                c.clip_seq_len(),
                c.sync_seq_len(),
                c.num_audio_frames()
            ),
            (345, 64, 192, 353_280)
        );
    }

    #[test]
    fn other_durations() {
        let c = SequenceConfig::mode_16k(3.0);
        // 75 sync frames -> 8 segments -> 64 tokens; 3 s -> ceil(93.75) latents
        assert_eq!((c.latent_seq_len(), c.clip_seq_len(), c.sync_seq_len()), (94, 24, 64));
        let c = SequenceConfig::mode_44k(20.0);
        assert_eq!(
            (c.latent_seq_len(), c.clip_seq_len(), c.sync_seq_len()),
            (862, 160, 488)
        );
        let c = SequenceConfig::mode_44k(5.37);
        assert_eq!((c.latent_seq_len(), c.clip_seq_len(), c.sync_seq_len()), (232, 42, 120));
    }
}
