//! Rate limits per key: a token bucket per key id (requests per second with a burst), answering
//! 429 with `Retry-After` when empty. Admin and open-mode callers are not limited.

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
}
