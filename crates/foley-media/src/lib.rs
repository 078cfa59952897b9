//! Everything ffmpeg for foley: probe and validate input videos, sample frames into RGB buffers,
//! write audio (wav with hound, AAC with ffmpeg) and mux it into mp4/mov without re-encoding the video.
