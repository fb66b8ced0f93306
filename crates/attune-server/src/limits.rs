//! Rate limits: a token bucket per key id (requests per second with a burst), answering 429 with
//! `Retry-After` when empty — the admin key has a bucket too, with a higher rate; the console and
//! the `/me` pages are limited per session and per client address. [`FailureThrottle`] counts
//! failed authentications per client address and answers 429 once there were too many in a
//! window (brute force on keys and console sign-in). Buckets are per process.

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::error::{ApiError, Code};

/// Token buckets by key id.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<FxHashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once. `per_second == 0` disables limiting.
    pub fn new(per_second: f64, burst: f64) -> RateLimiter {
        RateLimiter { per_second, burst, buckets: Mutex::new(FxHashMap::default()) }
    }

    /// Takes one token for `key_id`, or says how long to wait.
    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock();
        let (tokens, last) = buckets.entry(key_id.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64;
            let mut error =
                ApiError::new(Code::RateLimited, format!("Too many requests for this key; retry in {wait} s."));
            error.retry_after = Some(wait);
            Err(error)
        }
    }
}

/// Failed authentications per client address in a fixed window; past the limit every attempt
/// from that address (right or wrong) is answered 429 until the window ends.
pub struct FailureThrottle {
    limit: u32,
    window: std::time::Duration,
    failures: Mutex<FxHashMap<String, (u32, std::time::Instant)>>,
}

/// Addresses tracked at most; past it, windows that ended are dropped (and, if still full, all).
const MAX_TRACKED: usize = 100_000;

impl FailureThrottle {
    /// At most `limit` failures per `window` per address; `limit == 0` disables throttling.
    pub fn new(limit: u32, window: std::time::Duration) -> FailureThrottle {
        FailureThrottle { limit, window, failures: Mutex::new(FxHashMap::default()) }
    }

    /// Refuses (429, `rate_limited`) an address that failed too often in the current window.
    pub fn check(&self, address: &str) -> Result<(), ApiError> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let failures = self.failures.lock();
        match failures.get(address) {
            Some(&(count, started)) if count >= self.limit && now.duration_since(started) < self.window => {
                let wait = (self.window - now.duration_since(started)).as_secs().max(1);
                let mut error = ApiError::new(
                    Code::RateLimited,
                    format!("Too many failed sign-ins or unknown keys from this address; retry in {wait} s."),
                );
                error.retry_after = Some(wait);
                Err(error)
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure for `address`.
    pub fn record(&self, address: &str) {
        if self.limit == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(address) {
            let window = self.window;
            failures.retain(|_, (_, started)| now.duration_since(*started) < window);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
        }
        let entry = failures.entry(address.to_owned()).or_insert((0, now));
        if now.duration_since(entry.1) >= self.window {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_says_when() {
        let limiter = RateLimiter::new(1.0, 2.0);
        assert!(limiter.check("k").is_ok());
        assert!(limiter.check("k").is_ok());
        let err = limiter.check("k").unwrap_err();
        assert_eq!(err.code, Code::RateLimited);
        assert_eq!(err.retry_after, Some(1));
        assert!(limiter.check("other").is_ok(), "buckets are per key");
        assert!(RateLimiter::new(0.0, 0.0).check("k").is_ok());
    }

    #[test]
    fn failures_throttle_per_address() {
        let throttle = FailureThrottle::new(3, std::time::Duration::from_secs(3600));
        for _ in 0..3 {
            assert!(throttle.check("a").is_ok());
            throttle.record("a");
        }
        let err = throttle.check("a").unwrap_err();
        assert_eq!(err.code, Code::RateLimited);
        assert!(err.retry_after.is_some());
        assert!(throttle.check("b").is_ok(), "per address");
        let off = FailureThrottle::new(0, std::time::Duration::from_secs(1));
        off.record("a");
        assert!(off.check("a").is_ok());
    }
}
