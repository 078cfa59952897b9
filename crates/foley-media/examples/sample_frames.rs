//! Times frame sampling as the model uses it (8 fps at 384² stretched + 25 fps at 224² centre-cropped, one
//! decode): `cargo run --release -p foley-media --example sample_frames -- VIDEO`.

use std::time::Instant;

use foley_media::{sample_frames_multi, Resize, SampleSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).ok_or("usage: sample_frames VIDEO")?;
    let specs = [
        SampleSpec { fps: 8.0, resize: Resize::Stretch { width: 384, height: 384 } },
        SampleSpec { fps: 25.0, resize: Resize::ShortSideCenterCrop { size: 224 } },
    ];
    let t = Instant::now();
    let info = foley_media::probe(path.as_ref())?;
    let probe_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = sample_frames_multi(path.as_ref(), &specs, None)?;
    let sample_s = t.elapsed().as_secs_f64();
    println!(
        "{}x{} {} {:.2} s: probe {:.3} s, sample {:.3} s -> {:?} and {:?}",
        info.video.width, info.video.height, info.video.codec, info.duration_s, probe_s, sample_s,
        out[0].shape(), out[1].shape()
    );
    Ok(())
}
