//! The OCI SDK retry policy: up to 8 attempts with decorrelated jitter (base 1 s,
//! multiplier 2, cap 30 s). Sleeping and randomness are injectable so tests don't sleep.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

/// Sleeps (really, or not at all in tests).
pub trait Sleeper: Send + Sync {
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// Sleeps with tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Records the requested sleeps and returns at once (for tests).
#[derive(Clone, Debug, Default)]
pub struct RecordingSleeper(pub Arc<Mutex<Vec<Duration>>>);

impl RecordingSleeper {
    /// The sleeps requested so far.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.0.lock().unwrap().push(d);
        Box::pin(async {})
    }
}

/// The retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (the SDK's 8).
    pub max_attempts: u32,
    /// Base delay (1 s).
    pub base: Duration,
    /// Growth factor of the jitter's upper bound (2).
    pub multiplier: u32,
    /// Longest delay (30 s).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_secs(1),
            multiplier: 2,
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The next delay after `previous` (None before the first retry): decorrelated
    /// jitter, uniform in `[base, previous × multiplier]`, capped. `unit` is a
    /// random number in `[0, 1)`.
    pub fn next_delay(&self, previous: Option<Duration>, unit: f64) -> Duration {
        let prev = previous.unwrap_or(self.base);
        let upper = prev.saturating_mul(self.multiplier).max(self.base);
        let span = upper.saturating_sub(self.base).as_secs_f64();
        let d = self.base + Duration::from_secs_f64(span * unit.clamp(0.0, 1.0));
        d.min(self.cap)
    }
}

/// A small deterministic-or-seeded random source (SplitMix64) for jitter.
#[derive(Debug)]
pub struct Jitter(Mutex<u64>);

impl Jitter {
    /// Seeded from the clock.
    pub fn from_time() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Self::seeded(seed)
    }

    /// A fixed seed.
    pub fn seeded(seed: u64) -> Self {
        Self(Mutex::new(seed))
    }

    /// A number in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        let mut s = self.0.lock().unwrap();
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
