//! Bearer API keys, compared in constant time (both sides hashed first, so lengths leak nothing either).

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::AppState;

/// Hashes of the accepted keys.
#[derive(Clone, Default)]
pub struct Keys {
    hashes: Vec<[u8; 32]>,
    open: bool,
}

impl Keys {
    pub fn new(keys: &[String], open: bool) -> Self {
        Keys { hashes: keys.iter().map(|k| Sha256::digest(k.trim().as_bytes()).into()).collect(), open }
    }
    /// Whether `presented` is one of the keys. Every key is compared, whatever matches.
    pub fn accepts(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for k in &self.hashes {
            ok |= k.ct_eq(&h);
        }
        ok.into()
    }
    pub fn is_open(&self) -> bool {
        self.open
    }
}

/// Who submitted a task: a short fingerprint of the API key (the first 8 bytes of its SHA-256, hex), or `None`
/// on a server without keys. Put into each authorised request's extensions; the page lists "this key's" tasks
/// by it. The key itself is never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner(pub Option<String>);

impl Owner {
    pub fn of_key(key: &str) -> Owner {
        let h = Sha256::digest(key.trim().as_bytes());
        Owner(Some(h[..8].iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// Middleware: `Authorization: Bearer <key>` (or `Key <key>`), unless the server runs with `--no-auth`.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if state.keys.is_open() {
        req.extensions_mut().insert(Owner(None));
        return next.run(req).await;
    }
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("Key ")).unwrap_or("");
    let refusal = if token.is_empty() {
        ApiError::unauthorized("No API key was sent; send the header `Authorization: Bearer <key>`.")
    } else if !state.keys.accepts(token) {
        metrics::counter!("foley_auth_failures_total").increment(1);
        ApiError::unauthorized("The API key is not valid for this server.")
    } else {
        let owner = Owner::of_key(token);
        req.extensions_mut().insert(owner);
        return next.run(req).await;
    };
    // Kling's routes answer in Kling's error envelope.
    if req.uri().path().starts_with("/v1/") {
        crate::routes::kling::KlingError(refusal).into_response()
    } else {
        refusal.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_exactly() {
        let k = Keys::new(&["inf_abc".into(), "second".into()], false);
        assert!(k.accepts("inf_abc") && k.accepts("second"));
        assert!(!k.accepts("inf_ab") && !k.accepts("") && !k.accepts("inf_abcd"));
        assert!(!Keys::new(&[], false).accepts("x"));
    }

    #[test]
    fn owner_is_a_stable_short_fingerprint() {
        let a = Owner::of_key("inf_abc");
        assert_eq!(a, Owner::of_key(" inf_abc "));
        assert_ne!(a, Owner::of_key("inf_abd"));
        assert_eq!(a.0.as_deref().map(str::len), Some(16));
    }
}
