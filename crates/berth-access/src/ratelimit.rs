//! An in-memory, per-key rate limiter for API.md §3.2: an hourly budget and a
//! per-minute burst limit, both token buckets that refill continuously.
//!
//! Keys are user names or client IPs, sharded over a few mutexes so requests
//! for different keys rarely contend. A bucket that has refilled completely
//! carries no information (a new key starts full), so such entries are swept
//! away: memory stays proportional to the keys active in the last hour.
//! Counts are per process; several nodes each enforce the limit on their own.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Mutex, PoisonError},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

const SHARDS: usize = 16;

/// A shard is swept once it holds this many keys (then at twice what survived).
const MIN_SWEEP: usize = 1024;

/// How many requests a key may make; `0` means unlimited for that window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    /// Hourly budget.
    pub per_hour: u32,
    /// Burst limit per minute.
    pub per_minute: u32,
}

impl Default for RatePolicy {
    /// 1000 per hour, 100 per minute (API.md §3.2).
    fn default() -> Self {
        RatePolicy { per_hour: 1000, per_minute: 100 }
    }
}

/// The verdict on one request, with what the `X-RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed (it has been counted if so).
    pub allowed: bool,
    /// The hourly budget (`X-RateLimit-Limit`); `0` if unlimited: omit the headers then.
    pub limit: u32,
    /// Requests left before the key is limited (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Unix second at which the budget is whole again (`X-RateLimit-Reset`).
    pub reset_unix: i64,
    /// Seconds to wait before retrying (`Retry-After`); `0` when allowed.
    pub retry_after_secs: u64,
}

/// One token bucket's shape.
#[derive(Debug, Clone, Copy)]
struct Window {
    capacity: f64,
    per_second: f64,
}

impl Window {
    fn new(limit: u32, seconds: f64) -> Option<Self> {
        (limit > 0).then(|| Window { capacity: f64::from(limit), per_second: f64::from(limit) / seconds })
    }

    fn refill(self, tokens: f64, elapsed_secs: f64) -> f64 {
        (tokens + elapsed_secs * self.per_second).min(self.capacity)
    }

    /// Seconds until the bucket holds `target` tokens.
    fn secs_until(self, tokens: f64, target: f64) -> f64 {
        ((target - tokens) / self.per_second).max(0.0)
    }
}

/// A key's two buckets at `updated`.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    hour: f64,
    minute: f64,
    updated: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    keys: HashMap<String, Buckets>,
    sweep_at: usize,
}

/// A thread-safe limiter of requests per key.
#[derive(Debug)]
pub struct RateLimiter {
    policy: RatePolicy,
    hour: Option<Window>,
    minute: Option<Window>,
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    /// An `Instant` and the Unix time it stands for, to turn instants into reset times.
    anchor: (Instant, f64),
}

impl RateLimiter {
    /// A limiter whose wall-clock anchor is now.
    pub fn new(policy: RatePolicy) -> Self {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        Self::anchored(policy, Instant::now(), unix)
    }

    /// A limiter that takes `anchor` to be Unix time `anchor_unix` (for tests and injected clocks).
    pub fn with_anchor(policy: RatePolicy, anchor: Instant, anchor_unix: i64) -> Self {
        Self::anchored(policy, anchor, anchor_unix as f64)
    }

    fn anchored(policy: RatePolicy, anchor: Instant, anchor_unix: f64) -> Self {
        RateLimiter {
            policy,
            hour: Window::new(policy.per_hour, 3600.0),
            minute: Window::new(policy.per_minute, 60.0),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { sweep_at: MIN_SWEEP, ..Shard::default() })).collect(),
            hasher: RandomState::new(),
            anchor: (anchor, anchor_unix),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> RatePolicy {
        self.policy
    }

    /// Counts one request for `key` at `now` if both buckets allow it.
    pub fn check(&self, key: &str, now: Instant) -> RateDecision {
        if self.hour.is_none() && self.minute.is_none() {
            // Unlimited: nothing to count, nothing to remember.
            return self.decision(true, self.full(now), now);
        }
        let shard = &self.shards[self.hasher.hash_one(key) as usize % SHARDS];
        // A panic elsewhere cannot leave a bucket half-updated, so poisoning is harmless.
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if shard.keys.len() >= shard.sweep_at {
            self.sweep(&mut shard, now);
        }
        let current = shard.keys.get(key).map_or_else(|| self.full(now), |b| self.refilled(*b, now));
        let allowed =
            self.hour.is_none_or(|_| current.hour >= 1.0) && self.minute.is_none_or(|_| current.minute >= 1.0);
        let after = if allowed {
            Buckets { hour: current.hour - 1.0, minute: current.minute - 1.0, ..current }
        } else {
            current
        };
        match shard.keys.get_mut(key) {
            Some(slot) => *slot = after,
            None => {
                shard.keys.insert(key.to_owned(), after);
            }
        }
        drop(shard);
        self.decision(allowed, after, now)
    }

    /// Buckets of a key never seen (or swept): full.
    fn full(&self, now: Instant) -> Buckets {
        let capacity = |window: Option<Window>| window.map_or(0.0, |w| w.capacity);
        Buckets { hour: capacity(self.hour), minute: capacity(self.minute), updated: now }
    }

    /// `buckets` topped up for the time since they were last updated.
    fn refilled(&self, buckets: Buckets, now: Instant) -> Buckets {
        let elapsed = now.saturating_duration_since(buckets.updated).as_secs_f64();
        let refill = |window: Option<Window>, tokens| window.map_or(0.0, |w: Window| w.refill(tokens, elapsed));
        Buckets {
            hour: refill(self.hour, buckets.hour),
            minute: refill(self.minute, buckets.minute),
            updated: now.max(buckets.updated),
        }
    }

    /// Forgets every key whose buckets are full again at `now`. `check` does
    /// this by itself as shards grow; a periodic task may call it to free memory sooner.
    pub fn purge_idle(&self, now: Instant) {
        for shard in &self.shards {
            self.sweep(&mut shard.lock().unwrap_or_else(PoisonError::into_inner), now);
        }
    }

    /// Drops keys whose buckets are full again; they would be recreated identical.
    fn sweep(&self, shard: &mut Shard, now: Instant) {
        let full = self.full(now);
        shard.keys.retain(|_, buckets| {
            let current = self.refilled(*buckets, now);
            current.hour < full.hour || current.minute < full.minute
        });
        shard.sweep_at = MIN_SWEEP.max(shard.keys.len() * 2);
    }

    fn decision(&self, allowed: bool, buckets: Buckets, now: Instant) -> RateDecision {
        let limited = [(self.hour, buckets.hour), (self.minute, buckets.minute)];
        let limited = limited.iter().filter_map(|(window, tokens)| window.map(|w| (w, *tokens)));
        let remaining = limited.clone().map(|(_, tokens)| tokens.max(0.0).floor() as u32).min().unwrap_or(u32::MAX);
        let retry_after = if allowed {
            0.0
        } else {
            limited.clone().map(|(w, tokens)| w.secs_until(tokens, 1.0)).fold(1.0, f64::max)
        };
        // The budget that sets `limit` decides when things are whole again.
        let reset_in = match (self.hour, self.minute) {
            (Some(w), _) => w.secs_until(buckets.hour, w.capacity),
            (None, Some(w)) => w.secs_until(buckets.minute, w.capacity),
            (None, None) => 0.0,
        };
        let now_unix = self.anchor.1 + now.saturating_duration_since(self.anchor.0).as_secs_f64();
        RateDecision {
            allowed,
            limit: self.policy.per_hour,
            remaining,
            reset_unix: (now_unix + reset_in).ceil() as i64,
            retry_after_secs: retry_after.ceil() as u64,
        }
    }

    /// How many keys are tracked right now (for metrics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).keys.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0_UNIX: i64 = 1_700_000_000;

    fn new_limiter(per_hour: u32, per_minute: u32) -> (RateLimiter, Instant) {
        let t0 = Instant::now();
        (RateLimiter::with_anchor(RatePolicy { per_hour, per_minute }, t0, T0_UNIX), t0)
    }

    fn allowed_count(limiter: &RateLimiter, key: &str, now: Instant, attempts: u32) -> u32 {
        (0..attempts).filter(|_| limiter.check(key, now).allowed).count() as u32
    }

    #[test]
    fn burst_limit_applies_within_a_minute() {
        let (limiter, t0) = new_limiter(1000, 100);
        assert_eq!(allowed_count(&limiter, "alice", t0, 150), 100);
        let denied = limiter.check("alice", t0);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        // One token comes back every 0.6 s.
        assert_eq!(denied.retry_after_secs, 1);
        assert!(limiter.check("alice", t0 + Duration::from_millis(600)).allowed);
    }

    #[test]
    fn hourly_budget_applies_across_minutes() {
        let (limiter, t0) = new_limiter(1000, 100);
        let mut allowed = 0;
        for minute in 0..20 {
            allowed += allowed_count(&limiter, "bob", t0 + Duration::from_secs(60 * minute), 100);
        }
        // Ten full bursts, plus what the hourly bucket refilled meanwhile (1000/h ≈ 0.28/s).
        assert!((1000..1000 + 20 * 60 * 1000 / 3600 + 1).contains(&allowed), "allowed {allowed}");
        // At the last minute the hourly bucket ran dry while the burst bucket still had tokens.
        let at = t0 + Duration::from_secs(60 * 19);
        let denied = limiter.check("bob", at);
        assert!(!denied.allowed);
        assert_eq!(denied.limit, 1000);
        assert!((1..=4).contains(&denied.retry_after_secs), "retry after {}", denied.retry_after_secs);
    }

    #[test]
    fn keys_are_independent() {
        let (limiter, t0) = new_limiter(10, 5);
        assert_eq!(allowed_count(&limiter, "a", t0, 10), 5);
        assert_eq!(allowed_count(&limiter, "b", t0, 10), 5);
    }

    #[test]
    fn headers_count_down_and_reset_when_full() {
        let (limiter, t0) = new_limiter(3600, 0);
        let first = limiter.check("k", t0);
        assert_eq!((first.allowed, first.limit, first.remaining, first.retry_after_secs), (true, 3600, 3599, 0));
        // One token per second: whole again in one second.
        assert_eq!(first.reset_unix, T0_UNIX + 1);
        let second = limiter.check("k", t0);
        assert_eq!(second.remaining, 3598);
        assert_eq!(second.reset_unix, T0_UNIX + 2);
    }

    #[test]
    fn zero_means_unlimited() {
        let (limiter, t0) = new_limiter(0, 0);
        assert_eq!(allowed_count(&limiter, "k", t0, 5000), 5000);
        let decision = limiter.check("k", t0);
        assert_eq!((decision.limit, decision.remaining), (0, u32::MAX));
        assert_eq!(limiter.tracked_keys(), 0, "unlimited keys are not tracked");

        let (minute_only, t0) = new_limiter(0, 2);
        assert_eq!(allowed_count(&minute_only, "k", t0, 5), 2);
        let (hour_only, t0) = new_limiter(3, 0);
        assert_eq!(allowed_count(&hour_only, "k", t0, 5), 3);
    }

    #[test]
    fn denied_requests_are_not_counted() {
        let (limiter, t0) = new_limiter(1000, 1);
        assert!(limiter.check("k", t0).allowed);
        for _ in 0..50 {
            assert!(!limiter.check("k", t0).allowed);
        }
        assert!(limiter.check("k", t0 + Duration::from_secs(60)).allowed);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let (limiter, t0) = new_limiter(1000, 2);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(allowed_count(&limiter, "k", later, 2), 2);
        assert!(!limiter.check("k", t0).allowed);
    }

    #[test]
    fn purge_forgets_only_refilled_keys() {
        let (limiter, t0) = new_limiter(100, 10);
        for i in 0..40 {
            limiter.check(&format!("ip-{i}"), t0);
        }
        limiter.purge_idle(t0 + Duration::from_secs(1));
        assert_eq!(limiter.tracked_keys(), 40);
        limiter.check("late", t0 + Duration::from_secs(3590));
        limiter.purge_idle(t0 + Duration::from_secs(3600));
        assert_eq!(limiter.tracked_keys(), 1, "only the key used 10 s ago is not full yet");
    }

    #[test]
    fn shards_sweep_themselves() {
        let (limiter, t0) = new_limiter(100, 10);
        // Each key is used an hour after the one before, so every sweep empties
        // its shard but for the newest keys: no shard ever grows past MIN_SWEEP.
        for i in 0..MIN_SWEEP * SHARDS * 2 {
            limiter.check(&format!("ip-{i}"), t0 + Duration::from_secs(3600 * i as u64));
        }
        assert!(limiter.tracked_keys() <= MIN_SWEEP * SHARDS, "{} keys", limiter.tracked_keys());
    }

    #[test]
    fn limiter_is_shared_across_threads() {
        let (limiter, t0) = new_limiter(1000, 100);
        let allowed: u32 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| allowed_count(&limiter, "shared", t0, 50))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 100);
    }
}
