//! Container sniffing by content (never by file name): is this the ISO-BMFF / QuickTime family?

use crate::error::InputError;

/// Which member of the mov/mp4 family a file is, from its leading boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    /// ISO base media (mp4, m4v, 3gp, …): written back as mp4.
    Mp4,
    /// Apple QuickTime (`qt  ` brand or no `ftyp`): written back as mov.
    Mov,
}

impl Container {
    /// The ffmpeg muxer name for writing this container.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::Mp4 => "mp4",
            Container::Mov => "mov",
        }
    }
    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        self.muxer()
    }
}

/// Top-level QuickTime atom types that may open a mov file lacking `ftyp`.
const QT_LEADING_ATOMS: [&[u8; 4]; 7] = [b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"];

/// Classifies the first bytes of a file (at least 12 are needed for a positive answer).
pub fn sniff(head: &[u8]) -> Result<Container, InputError> {
    if head.is_empty() {
        return Err(InputError::Empty);
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        let detected = if find(head, b"webm") { "a WebM file" } else { "a Matroska (mkv) file" };
        return Err(InputError::WrongContainer { detected: detected.into() });
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(64)]);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("#EXTM3U") {
        return Err(InputError::Playlist { detected: "an HLS playlist".into() });
    }
    if trimmed.starts_with("ffconcat") {
        return Err(InputError::Playlist { detected: "an ffconcat script".into() });
    }
    if let Some(other) = known_other(head) {
        return Err(InputError::WrongContainer { detected: other.into() });
    }
    if head.len() >= 12 {
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = &head[4..8];
        // size 0 = to end of file, 1 = 64-bit size follows; otherwise at least the 8-byte header.
        let plausible = size == 0 || size == 1 || size >= 8;
        if plausible && kind == b"ftyp" {
            return Ok(if &head[8..12] == b"qt  " { Container::Mov } else { Container::Mp4 });
        }
        if plausible && QT_LEADING_ATOMS.iter().any(|a| kind == *a) {
            return Ok(Container::Mov);
        }
    }
    Err(InputError::Unrecognised)
}

/// Names a few common non-mp4 formats so that the error says what the file is.
fn known_other(head: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| head.starts_with(m);
    Some(match () {
        _ if starts(b"RIFF") && head.get(8..12) == Some(b"AVI ") => "an AVI file",
        _ if starts(b"RIFF") && head.get(8..12) == Some(b"WAVE") => "a WAV audio file",
        _ if starts(b"FLV") => "an FLV file",
        _ if starts(b"OggS") => "an Ogg file",
        _ if starts(b"ID3") || starts(&[0xFF, 0xFB]) => "an MP3 audio file",
        _ if starts(&[0x47]) && head.get(188) == Some(&0x47) => "an MPEG transport stream",
        _ if starts(&[0x00, 0x00, 0x01, 0xBA]) => "an MPEG program stream",
        _ if starts(&[0x89, b'P', b'N', b'G']) => "a PNG image",
        _ if starts(&[0xFF, 0xD8, 0xFF]) => "a JPEG image",
        _ if starts(b"GIF8") => "a GIF image",
        _ => return None,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_leading_bytes() {
        let ftyp = |brand: &[u8; 4]| [&[0, 0, 0, 20][..], b"ftyp", brand, &[0, 0, 0, 0]].concat();
        assert_eq!(sniff(&ftyp(b"isom")), Ok(Container::Mp4));
        assert_eq!(sniff(&ftyp(b"qt  ")), Ok(Container::Mov));
        assert_eq!(sniff(&[&[0, 0, 0, 8][..], b"wide", &[0, 0, 0, 0]].concat()), Ok(Container::Mov));
        assert_eq!(sniff(b""), Err(InputError::Empty));
        assert_eq!(sniff(b"#EXTM3U\n#EXT-X-VERSION:3\n").unwrap_err().kind(), "playlist");
        assert_eq!(sniff(b"ffconcat version 1.0\nfile a.mp4\n").unwrap_err().kind(), "playlist");
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0, 0, 0, 0, b'w', b'e', b'b', b'm']).unwrap_err().kind(),
            "wrong_container");
        assert_eq!(sniff(b"hello, this is just some text").unwrap_err(), InputError::Unrecognised);
    }
}
