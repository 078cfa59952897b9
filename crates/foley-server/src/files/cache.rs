//! A bounded local cache of a remote store's files (`<data-dir>/cache/<id>`), least recently used first out.
//! It is only a cache: emptied at start, never the only copy of anything, and nothing outside this node refers
//! to it. The bound is strict except for the newest entry, which stays even when it alone is larger.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

/// Files by id, with their sizes and last use.
pub struct Cache {
    dir: PathBuf,
    cap: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// id → (size in bytes, tick of last use).
    entries: HashMap<String, (u64, u64)>,
    total: u64,
    tick: u64,
}

impl State {
    fn touch(&mut self, id: &str) -> bool {
        self.tick += 1;
        let tick = self.tick;
        match self.entries.get_mut(id) {
            Some(e) => {
                e.1 = tick;
                true
            }
            None => false,
        }
    }
    fn forget(&mut self, id: &str) {
        if let Some((size, _)) = self.entries.remove(id) {
            self.total -= size;
        }
    }
}

impl Cache {
    /// An empty cache in `dir` (whatever was there from an earlier run is removed) holding up to `cap` bytes.
    pub fn new(dir: &Path, cap: u64) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        std::fs::create_dir_all(dir)?;
        Ok(Cache { dir: dir.to_path_buf(), cap, state: Mutex::new(State::default()) })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The cached file of `id`, marked as just used.
    pub async fn get(&self, id: &str) -> Option<PathBuf> {
        let mut st = self.state.lock().await;
        if !st.touch(id) {
            return None;
        }
        let path = self.path(id);
        if tokio::fs::metadata(&path).await.is_ok() {
            Some(path)
        } else {
            st.forget(id);
            None
        }
    }

    /// Moves `src` (on the same filesystem, else copied) in as `id`, then evicts the least recently used other
    /// entries until the total is within the bound. Returns the entry's path.
    pub async fn insert(&self, id: &str, src: &Path) -> std::io::Result<PathBuf> {
        let dst = self.path(id);
        let mut st = self.state.lock().await;
        if tokio::fs::rename(src, &dst).await.is_err() {
            tokio::fs::copy(src, &dst).await?;
            let _ = tokio::fs::remove_file(src).await;
        }
        let size = tokio::fs::metadata(&dst).await?.len();
        st.forget(id);
        st.entries.insert(id.to_string(), (size, 0));
        st.total += size;
        st.touch(id);
        while st.total > self.cap {
            let oldest = st.entries.iter().filter(|(k, _)| k.as_str() != id).min_by_key(|(_, e)| e.1);
            let Some(old) = oldest.map(|(k, _)| k.clone()) else { break };
            st.forget(&old);
            if let Err(e) = tokio::fs::remove_file(self.path(&old)).await {
                tracing::warn!(error = %e, file = %old, "evicting a cached file failed");
            }
        }
        Ok(dst)
    }

    /// Hard-links (else copies) the cached `id` to `dst`; `false` when it is not cached. Under the lock, so no
    /// eviction can remove it in between.
    pub async fn link_to(&self, id: &str, dst: &Path) -> std::io::Result<bool> {
        let mut st = self.state.lock().await;
        if !st.touch(id) {
            return Ok(false);
        }
        let src = self.path(id);
        if tokio::fs::hard_link(&src, dst).await.is_err() {
            if let Err(e) = tokio::fs::copy(&src, dst).await {
                st.forget(id);
                return if e.kind() == std::io::ErrorKind::NotFound { Ok(false) } else { Err(e) };
            }
        }
        Ok(true)
    }

    /// Drops `id` from the cache.
    pub async fn remove(&self, id: &str) {
        let mut st = self.state.lock().await;
        st.forget(id);
        let _ = tokio::fs::remove_file(self.path(id)).await;
    }

    /// (files, bytes) held now.
    pub async fn usage(&self) -> (usize, u64) {
        let st = self.state.lock().await;
        (st.entries.len(), st.total)
    }
}

#[cfg(test)]
mod tests {
    use super::Cache;

    #[tokio::test]
    async fn least_recently_used_goes_first_and_the_bound_holds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(&dir.path().join("cache"), 250).unwrap();
        let put = |name: &str, n: usize| {
            let p = dir.path().join(name);
            std::fs::write(&p, vec![7u8; n]).unwrap();
            p
        };
        cache.insert("a", &put("a", 100)).await.unwrap();
        cache.insert("b", &put("b", 100)).await.unwrap();
        assert!(cache.get("a").await.is_some()); // a is now newer than b
        cache.insert("c", &put("c", 100)).await.unwrap();
        assert!(cache.get("b").await.is_none(), "b was the least recently used");
        assert!(cache.get("a").await.is_some() && cache.get("c").await.is_some());
        assert_eq!(cache.usage().await, (2, 200));
        // One file over the bound stays alone.
        cache.insert("big", &put("big", 400)).await.unwrap();
        assert_eq!(cache.usage().await, (1, 400));
        let link = dir.path().join("link");
        assert!(cache.link_to("big", &link).await.unwrap());
        cache.remove("big").await;
        assert_eq!(std::fs::read(&link).unwrap().len(), 400, "a linked copy outlives the entry");
        assert!(!cache.link_to("big", &link).await.unwrap());
        assert_eq!(std::fs::read_dir(dir.path().join("cache")).unwrap().count(), 0);
    }
}
