//! probe + validate on arbitrary bytes: must return a verdict, never crash or hang.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("foley-fuzz-{}.mp4", std::process::id()));
    let Ok(mut f) = std::fs::File::create(&path) else { return };
    if f.write_all(data).is_err() {
        return;
    }
    drop(f);
    if let Ok(info) = foley_media::probe(&path) {
        let _ = foley_media::validate(&info, &foley_media::Limits::default());
    }
});
