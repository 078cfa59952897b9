//! The keys file (`--api-keys-file`, `FOLEY_API_KEYS_FILE`): one key per line, `name key` for a client key or
//! `operator name key` for an operator key; blank lines and lines starting with `#` are skipped. Names are 1–64
//! characters of `A-Z a-z 0-9 . _ - @`. The keys of `--api-keys` (named `key-1`, `key-2`…) and `--operator-keys`
//! (`operator-1`…) are added to the file's. Names and keys must be unique.
//!
//! The server re-reads the file every [`crate::Config::keys_reload`] (2 s by default) and puts a changed file in
//! force at once, without a restart; a file that cannot be read or parsed, or that leaves no key at all, keeps the
//! previous keys in force and logs why (once per change of the file). Errors name the line, never the key.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{KeyEntry, Keys};
use crate::{AppState, Config};

/// Parses the text of a keys file.
pub fn parse(text: &str) -> Result<Vec<KeyEntry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (name, key, operator) = match words.as_slice() {
            ["operator", name, key] => (*name, *key, true),
            [name, key] => (*name, *key, false),
            _ => {
                return Err(format!(
                    "line {}: expected `name key` or `operator name key` ({} words found)",
                    i + 1,
                    words.len()
                ))
            }
        };
        check_name(name).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push(KeyEntry::new(key, name, operator));
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.chars().count() > 64 || !name.chars().all(ok_char) {
        return Err(format!("the name {name:.70?} is not 1-64 characters of A-Z a-z 0-9 . _ - @"));
    }
    Ok(())
}

/// The file's keys plus the listed ones (`key-N` for client keys, `operator-N` for operator keys), checked for
/// duplicate names and keys.
pub fn combine(mut entries: Vec<KeyEntry>, api_keys: &[String], operator_keys: &[String]) -> Result<Vec<KeyEntry>, String> {
    let listed = |keys: &[String], prefix: &str, operator: bool| -> Vec<KeyEntry> {
        keys.iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, k)| KeyEntry::new(k, &format!("{prefix}-{}", i + 1), operator))
            .collect()
    };
    entries.extend(listed(api_keys, "key", false));
    entries.extend(listed(operator_keys, "operator", true));
    for (i, e) in entries.iter().enumerate() {
        if entries[..i].iter().any(|o| o.name == e.name) {
            return Err(format!("the name {:?} is given to two keys", e.name));
        }
        if let Some(other) = entries[..i].iter().find(|o| o.hash == e.hash) {
            return Err(format!("the keys named {:?} and {:?} are the same key", other.name, e.name));
        }
    }
    Ok(entries)
}

/// The keys `cfg` names (file, lists), as the server starts.
pub fn load(cfg: &Config) -> Result<Keys, String> {
    let from_file = match &cfg.api_keys_file {
        Some(path) => read(path)?,
        None => Vec::new(),
    };
    let entries = combine(from_file, &cfg.api_keys, &cfg.operator_keys)?;
    Ok(Keys::from_entries(entries, cfg.no_auth))
}

fn read(path: &Path) -> Result<Vec<KeyEntry>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("the keys file {} cannot be read: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("the keys file {}: {e}", path.display()))
}

/// Re-reads the keys file while the server runs (nothing to do without one).
pub fn spawn(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let path = state.cfg.api_keys_file.clone()?;
    let state = state.clone();
    Some(tokio::spawn(async move {
        let mut last = tokio::fs::read(&path).await.ok();
        let mut tick = tokio::time::interval(state.cfg.keys_reload);
        tick.tick().await;
        loop {
            tick.tick().await;
            if state.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            let now = tokio::fs::read(&path).await;
            let bytes = match now {
                Ok(b) => b,
                Err(e) => {
                    if last.is_some() {
                        tracing::warn!(file = %path.display(), error = %e, "the keys file cannot be read; keeping the previous keys");
                        last = None;
                    }
                    continue;
                }
            };
            if last.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            last = Some(bytes.clone());
            match reload(&state, &bytes) {
                Ok(keys) => {
                    let operators = keys.entries.iter().filter(|e| e.operator).count();
                    tracing::info!(file = %path.display(), keys = keys.len(), operators, "keys file reloaded");
                    state.keys.set(keys);
                }
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "keys file not reloaded; keeping the previous keys"),
            }
        }
    }))
}

fn reload(state: &AppState, bytes: &[u8]) -> Result<Keys, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let entries = combine(parse(text)?, &state.cfg.api_keys, &state.cfg.operator_keys)?;
    if entries.is_empty() && !state.cfg.no_auth {
        return Err("it leaves no key at all (a server with keys would refuse every request)".into());
    }
    Ok(Keys::from_entries(entries, state.cfg.no_auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roles_comments_and_the_listed_keys() {
        let text = "# studio keys\n\nalice  inf_alice_key\noperator ops inf_ops_key\n  bob inf_bob_key  \n";
        let e = combine(parse(text).unwrap(), &["inf_env".into()], &["inf_root".into()]).unwrap();
        let got: Vec<(&str, bool)> = e.iter().map(|e| (e.name.as_str(), e.operator)).collect();
        assert_eq!(got, [("alice", false), ("ops", true), ("bob", false), ("key-1", false), ("operator-1", true)]);
        let keys = Keys::from_entries(e, false);
        assert_eq!(keys.find("inf_bob_key").map(|e| e.name.as_str()), Some("bob"));
        assert!(keys.find("bob").is_none());
    }

    #[test]
    fn bad_lines_and_duplicates_are_refused_without_showing_the_key() {
        let err = parse("alice inf_secret extra words\n").unwrap_err();
        assert!(err.contains("line 1") && !err.contains("inf_secret"), "{err}");
        let err = parse("ok k1\nal/ice inf_secret\n").unwrap_err();
        assert!(err.contains("line 2") && !err.contains("inf_secret"), "{err}");
        assert!(parse("just_one_word\n").is_err());
        let err = combine(parse("a same_key\nb same_key\n").unwrap(), &[], &[]).unwrap_err();
        assert!(err.contains("same key") && !err.contains("same_key"), "{err}");
        assert!(combine(parse("key-1 k1\n").unwrap(), &["k2".into()], &[]).unwrap_err().contains("key-1"));
    }
}
