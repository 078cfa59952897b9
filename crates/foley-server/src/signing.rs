//! HMAC-SHA256 signatures: expiring download/upload URLs and webhook bodies.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What a signed URL lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Download,
    Upload,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Download => "get",
            Purpose::Upload => "put",
        }
    }
}

pub fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
        mac.update(b"\n");
    }
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `sig` query value for a file id, purpose and expiry (Unix seconds).
pub fn sign(secret: &[u8], purpose: Purpose, id: &str, expires: i64) -> String {
    hmac_hex(secret, &[purpose.tag().as_bytes(), id.as_bytes(), expires.to_string().as_bytes()])
}

/// Whether `sig` is valid for (purpose, id, expires) and `expires` has not passed (constant-time compare).
pub fn verify(secret: &[u8], purpose: Purpose, id: &str, expires: i64, sig: &str, now_s: i64) -> bool {
    if expires < now_s {
        return false;
    }
    let want = sign(secret, purpose, id, expires);
    want.as_bytes().ct_eq(sig.as_bytes()).into()
}

/// `X-Foley-Signature` of a webhook: `t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">` (Stripe-style, so
/// receivers can reject replays by age).
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_expire_and_bind_id_and_purpose() {
        let s = b"secret";
        let sig = sign(s, Purpose::Download, "abc", 1000);
        assert!(verify(s, Purpose::Download, "abc", 1000, &sig, 999));
        assert!(!verify(s, Purpose::Download, "abc", 1000, &sig, 1001));
        assert!(!verify(s, Purpose::Upload, "abc", 1000, &sig, 999));
        assert!(!verify(s, Purpose::Download, "abd", 1000, &sig, 999));
        assert!(!verify(b"other", Purpose::Download, "abc", 1000, &sig, 999));
    }

    #[test]
    fn webhook_signature_format() {
        let sig = webhook_signature(b"k", 1700000000, b"{}");
        assert!(sig.starts_with("t=1700000000,v1=") && sig.len() == "t=1700000000,v1=".len() + 64);
    }
}
