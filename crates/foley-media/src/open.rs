//! The only way this crate opens a file with ffmpeg: the mov/mp4 demuxer forced, the `file` protocol only,
//! external data references off. Whatever a file contains, ffmpeg never runs the concat, hls or any other
//! playlist demuxer and never opens a second URL on its behalf.

use std::ffi::CString;
use std::path::Path;
use std::ptr;

use ffmpeg_next as ff;
use ff::ffi;

use crate::error::{InputError, MediaError, Result};

/// Opens `path` (a local file of ours) as mov/mp4, returning an [`InputError::Corrupt`] when the mov demuxer
/// cannot make sense of it.
pub(crate) fn open_mov(path: &Path) -> Result<ff::format::context::Input> {
    crate::init();
    let abs = std::fs::canonicalize(path).map_err(|e| MediaError::io(path, e))?;
    // `file:` prefix so that no other protocol can be selected by a crafted name such as "concat:a|b".
    let url = CString::new(format!("file:{}", abs.display()))
        .map_err(|_| MediaError::Invalid(format!("{}: path contains a NUL byte", path.display())))?;
    let mut opts = ff::Dictionary::new();
    opts.set("protocol_whitelist", "file");
    opts.set("format_whitelist", "mov,mp4,m4a,3gp,3g2,mj2");
    opts.set("enable_drefs", "0");
    opts.set("use_absolute_path", "0");
    unsafe {
        let fmt = ffi::av_find_input_format(c"mov".as_ptr());
        if fmt.is_null() {
            return Err(MediaError::Invalid("this ffmpeg build has no mov demuxer".into()));
        }
        let mut ps = ffi::avformat_alloc_context();
        if ps.is_null() {
            return Err(MediaError::ff("allocating a format context", ff::Error::Other { errno: ff::util::error::ENOMEM }));
        }
        let mut raw_opts = opts.disown();
        let res = ffi::avformat_open_input(&mut ps, url.as_ptr(), fmt as _, &mut raw_opts);
        ff::Dictionary::own(raw_opts);
        if res < 0 {
            // avformat_open_input frees the context on failure.
            return Err(InputError::Corrupt { detail: ff::Error::from(res).to_string() }.into());
        }
        let res = ffi::avformat_find_stream_info(ps, ptr::null_mut());
        if res < 0 {
            ffi::avformat_close_input(&mut ps);
            return Err(InputError::Corrupt { detail: ff::Error::from(res).to_string() }.into());
        }
        Ok(ff::format::context::Input::wrap(ps))
    }
}


/// Reads the next packet into `packet`, releasing what it held before (ffmpeg-next's `Packet::read` does not,
/// and a reused packet would leak every buffer). `Ok(false)` at the end of the file.
pub(crate) fn next_packet(
    input: &mut ff::format::context::Input,
    packet: &mut ff::Packet,
) -> std::result::Result<bool, ff::Error> {
    // SAFETY: the packet is valid; unref leaves it blank and reusable.
    unsafe { ffi::av_packet_unref(ff::packet::Mut::as_mut_ptr(packet)) };
    match packet.read(input) {
        Ok(()) => Ok(true),
        Err(ff::Error::Eof) => Ok(false),
        Err(e) => Err(e),
    }
}
