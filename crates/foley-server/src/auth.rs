//! Bearer API keys, compared in constant time (both sides hashed first, so lengths leak nothing either), each with
//! a name (what logs and metrics show, never the key) and a role: a client key sees only its own tasks and files,
//! an operator key sees and manages every task. The keys come from `--api-keys` / `--operator-keys` and from a keys
//! file ([`keyfile`]) that is re-read while the server runs ([`KeyRing`]).

pub mod keyfile;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;

use crate::error::ApiError;
use crate::AppState;

/// One accepted key, as the server keeps it: the hash of the key, never the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    hash: [u8; 32],
    /// The fingerprint stored with the key's tasks and files ([`Owner::of_key`]).
    pub owner: String,
    /// What logs, metrics and the page call the key (`key-1`… for keys given without a name).
    pub name: String,
    /// Whether the key may see and manage every task.
    pub operator: bool,
}

impl KeyEntry {
    /// A key with its name and role.
    pub fn new(key: &str, name: &str, operator: bool) -> Self {
        let hash: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
        let owner = Owner::of_key(key).0.unwrap_or_default();
        KeyEntry { hash, owner, name: name.to_string(), operator }
    }
}

/// The accepted keys (hashes, names, roles).
#[derive(Clone, Debug, Default)]
pub struct Keys {
    entries: Vec<KeyEntry>,
    open: bool,
}

impl Keys {
    /// Unnamed client keys (named `key-1`, `key-2`… in their order); `open`: a server without keys.
    pub fn new(keys: &[String], open: bool) -> Self {
        let entries = keys.iter().enumerate().map(|(i, k)| KeyEntry::new(k, &format!("key-{}", i + 1), false)).collect();
        Keys { entries, open }
    }
    /// Named keys (see [`keyfile::combine`] for how the sources are put together).
    pub fn from_entries(entries: Vec<KeyEntry>, open: bool) -> Self {
        Keys { entries, open }
    }
    /// The entry of `presented`, if it is one of the keys. Every key is compared, whatever matches.
    pub fn find(&self, presented: &str) -> Option<&KeyEntry> {
        let h: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&h)) && found.is_none() {
                found = Some(e);
            }
        }
        found
    }
    /// Whether `presented` is one of the keys.
    pub fn accepts(&self, presented: &str) -> bool {
        self.find(presented).is_some()
    }
    pub fn is_open(&self) -> bool {
        self.open
    }
    /// The name of the key whose fingerprint is `owner`, if it is (still) one of the keys.
    pub fn name_of(&self, owner: &str) -> Option<&str> {
        self.entries.iter().find(|e| e.owner == owner).map(|e| e.name.as_str())
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The keys in force, replaced as a whole when the keys file changes (requests in flight keep what they read).
#[derive(Default)]
pub struct KeyRing {
    current: RwLock<Arc<Keys>>,
}

impl KeyRing {
    pub fn new(keys: Keys) -> Self {
        KeyRing { current: RwLock::new(Arc::new(keys)) }
    }
    /// The keys in force now.
    pub fn get(&self) -> Arc<Keys> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    /// Puts `keys` in force.
    pub fn set(&self, keys: Keys) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
    }
    /// Owner fingerprint → key name, for showing whose task it is.
    pub fn names(&self) -> HashMap<String, String> {
        self.get().entries.iter().map(|e| (e.owner.clone(), e.name.clone())).collect()
    }
}

/// Who submitted a task: a short fingerprint of the API key (the first 8 bytes of its SHA-256, hex), or `None`
/// on a server without keys. The key itself is never stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner(pub Option<String>);

impl Owner {
    pub fn of_key(key: &str) -> Owner {
        let h = Sha256::digest(key.trim().as_bytes());
        Owner(Some(h[..8].iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// The authorised caller of a request (in its extensions): whose tasks it may see, its key's name, its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub owner: Owner,
    /// The key's name (`anonymous` on a server without keys).
    pub name: String,
    pub operator: bool,
}

impl Caller {
    /// The caller of a server without keys: sees the tasks stored without a key.
    pub fn anonymous() -> Self {
        Caller { owner: Owner(None), name: "anonymous".into(), operator: false }
    }
    /// Whether the caller may see (and manage) what belongs to `owner`: its own things, or anything for an
    /// operator. Everything else is answered exactly as if it did not exist.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        self.operator || self.owner.0.as_deref() == owner
    }
    /// What a listing of this caller shows.
    pub fn scope(&self) -> crate::store::Scope<'_> {
        if self.operator {
            crate::store::Scope::All
        } else {
            crate::store::Scope::Owner(self.owner.0.as_deref())
        }
    }
}

/// Middleware: `Authorization: Bearer <key>` (or `Key <key>`), unless the server runs with `--no-auth`. Puts the
/// [`Caller`] into the request and runs the rest of it in a span carrying the key's name.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let keys = state.keys.get();
    if keys.is_open() {
        req.extensions_mut().insert(Caller::anonymous());
        return next.run(req).await;
    }
    let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let token = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("Key ")).unwrap_or("");
    let refusal = if token.is_empty() {
        ApiError::unauthorized("No API key was sent; send the header `Authorization: Bearer <key>`.")
    } else if let Some(entry) = keys.find(token) {
        let caller = Caller { owner: Owner(Some(entry.owner.clone())), name: entry.name.clone(), operator: entry.operator };
        metrics::counter!("foley_key_requests_total", "key" => caller.name.clone()).increment(1);
        let span = tracing::info_span!("key", key = %caller.name, operator = caller.operator);
        req.extensions_mut().insert(caller);
        return next.run(req).instrument(span).await;
    } else {
        metrics::counter!("foley_auth_failures_total").increment(1);
        ApiError::unauthorized("The API key is not valid for this server.")
    };
    // Kling's routes answer in Kling's error envelope.
    if req.uri().path().starts_with("/v1/") {
        crate::error::KlingError(refusal).into_response()
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
    fn unnamed_keys_are_numbered_and_found_with_their_owner() {
        let k = Keys::new(&["inf_abc".into(), "second".into()], false);
        let e = k.find("second").unwrap();
        assert_eq!((e.name.as_str(), e.operator), ("key-2", false));
        assert_eq!(Some(e.owner.clone()), Owner::of_key("second").0);
        assert_eq!(k.name_of(&e.owner), Some("key-2"));
        assert_eq!(k.name_of("0000000000000000"), None);
    }

    #[test]
    fn owner_is_a_stable_short_fingerprint() {
        let a = Owner::of_key("inf_abc");
        assert_eq!(a, Owner::of_key(" inf_abc "));
        assert_ne!(a, Owner::of_key("inf_abd"));
        assert_eq!(a.0.as_deref().map(str::len), Some(16));
    }

    #[test]
    fn a_caller_sees_its_own_and_an_operator_everything() {
        let a = Caller { owner: Owner(Some("aaaa".into())), name: "a".into(), operator: false };
        assert!(a.may_see(Some("aaaa")));
        assert!(!a.may_see(Some("bbbb")) && !a.may_see(None));
        let op = Caller { operator: true, ..a.clone() };
        assert!(op.may_see(Some("bbbb")) && op.may_see(None));
        assert!(Caller::anonymous().may_see(None) && !Caller::anonymous().may_see(Some("aaaa")));
    }
}
