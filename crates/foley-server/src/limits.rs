//! Per-key fairness at submission: a token bucket per key ([`RateLimiter`]; `--key-rate` per minute sustained,
//! `--key-burst` at once) kept in this process, so in a cluster each API node applies it on its own. The per-key
//! bound on live tasks (`--max-tasks-per-key`) is checked by the store, atomically with the insert
//! ([`crate::store::TaskStore::admit_within`]), so it holds across nodes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::ApiError;
use crate::AppState;

/// The 429 for a key over its submission rate, `wait` seconds before its next token.
pub fn rate_limited(state: &AppState, wait: u64) -> ApiError {
    let rate = state.cfg.key_rate_per_min.unwrap_or(0.0);
    ApiError::limited(
        "key_rate_limit",
        format!(
            "This API key is over its submission rate (the per-key rate limit: {rate} tasks a minute, bursts of {}); retry in {wait} s.",
            state.cfg.key_burst
        ),
        wait,
    )
}

/// The 429 for a key that has `--max-tasks-per-key` tasks queued or running.
pub fn too_many_tasks(state: &AppState) -> ApiError {
    let n = state.cfg.max_tasks_per_key.unwrap_or(0);
    ApiError::limited(
        "key_task_limit",
        format!("This API key already has {n} tasks queued or running (the per-key task limit); retry when one of them ends."),
        5,
    )
}

/// Token buckets by key (owner fingerprint; `""` for a server without keys). A submission is refused while its
/// key's bucket holds less than one token ([`RateLimiter::check`], before the input is even read), and an admitted
/// task takes one ([`RateLimiter::charge`]); refused submissions cost nothing, so a client that hits the queue
/// bound is not also punished on its rate. Submissions racing past the check may leave a bucket in debt (bounded
/// by one burst), which later submissions wait out.
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_min` submissions a minute sustained, `burst` at once (at least one).
    pub fn new(per_min: f64, burst: u32) -> Self {
        RateLimiter { per_sec: per_min.max(0.0) / 60.0, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// `Ok` if `key` may submit now, else in how many whole seconds it may.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    /// Takes one token of `key`'s bucket (an admitted task).
    pub fn charge(&self, key: &str) {
        self.charge_at(key, Instant::now())
    }

    /// Runs `f` on `key`'s bucket, refilled up to `now`.
    fn with_bucket<T>(&self, key: &str, now: Instant, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Forget full buckets now and then, so that keys that went quiet cost nothing.
        if buckets.len() > 10_000 {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst);
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        f(tokens)
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let per_sec = self.per_sec;
        self.with_bucket(key, now, |tokens| {
            if *tokens >= 1.0 {
                Ok(())
            } else if per_sec <= 0.0 {
                Err(60)
            } else {
                Err(((1.0 - *tokens) / per_sec).ceil().max(1.0) as u64)
            }
        })
    }

    fn charge_at(&self, key: &str, now: Instant) {
        let floor = -self.burst;
        self.with_bucket(key, now, |tokens| *tokens = (*tokens - 1.0).max(floor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate_per_key() {
        let r = RateLimiter::new(60.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.check_at("a", t0), Ok(()));
            r.charge_at("a", t0);
        }
        assert_eq!(r.check_at("a", t0), Err(1));
        // Checking costs nothing; another key has its own bucket.
        assert_eq!(r.check_at("a", t0), Err(1));
        assert_eq!(r.check_at("b", t0), Ok(()));
        // One a second comes back.
        assert_eq!(r.check_at("a", t0 + Duration::from_millis(1000)), Ok(()));
        r.charge_at("a", t0 + Duration::from_millis(1000));
        assert_eq!(r.check_at("a", t0 + Duration::from_millis(1100)), Err(1));
        // Debt from racing admissions is waited out, and bounded by one burst.
        for _ in 0..10 {
            r.charge_at("a", t0 + Duration::from_millis(1100));
        }
        assert_eq!(r.check_at("a", t0 + Duration::from_millis(1100)), Err(4));
        let slow = RateLimiter::new(6.0, 1);
        slow.charge_at("a", t0);
        assert_eq!(slow.check_at("a", t0), Err(10));
    }
}
