//! Frame sampling as the pipeline runs it: one decode of a 1280x720 25 fps h264 clip (`FOLEY_BENCH_SECONDS`,
//! default 8) into 8 fps at 384² (CLIP) and 25 fps at 224² centre-cropped (Synchformer).

use criterion::{criterion_group, criterion_main, Criterion};
use foley_media::{sample_frames_multi, Resize, SampleSpec};

fn bench(c: &mut Criterion) {
    let secs = foley_benches::seconds();
    let dir = std::env::temp_dir().join(format!("foley-bench-frames-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let clip = dir.join("clip.mp4");
    foley_benches::test_clip(&clip, secs).expect("ffmpeg writes the test clip");
    let specs = [
        SampleSpec { fps: 8.0, resize: Resize::Stretch { width: 384, height: 384 } },
        SampleSpec { fps: 25.0, resize: Resize::ShortSideCenterCrop { size: 224 } },
    ];
    let mut g = c.benchmark_group(format!("frames_720p_{secs}s"));
    g.sample_size(10);
    g.bench_function("sample_frames_multi", |bn| {
        bn.iter(|| sample_frames_multi(&clip, &specs, None).expect("frames").len())
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
