//! The foley Engine: loads a model bundle once and turns a generation request (video, prompts, ASMR mode)
//! into audio stems, a loudness-normalised mix and a muxed video. It knows nothing of HTTP.
