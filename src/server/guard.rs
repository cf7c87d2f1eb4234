//! Failed logins slowed per client address, one mechanism for both ports: each failure
//! from an address doubles the wait before its next attempt is checked (100 ms up to
//! 5 s), a success or a quiet minute forgets it, and a burst is logged once, not per attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::locks::Unpoisoned;

/// The wait after the first failure; each further failure doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// Failures older than this are forgotten (the burst is over).
const QUIET: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it the quietest are forgotten first.
const MAX_ADDRESSES: usize = 100_000;

/// One address's burst of failures.
struct Burst {
    failures: u32,
    last: Instant,
}

/// Failed logins by client address.
#[derive(Default)]
pub struct LoginGuard {
    bursts: Mutex<HashMap<IpAddr, Burst>>,
}

impl LoginGuard {
    /// How long an attempt from `ip` waits before its credentials are checked.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let mut bursts = self.bursts.locked();
        match bursts.get(&ip) {
            Some(b) if b.last.elapsed() >= QUIET => {
                let failures = b.failures;
                bursts.remove(&ip);
                ended(ip, failures);
                Duration::ZERO
            }
            Some(b) => delay_after(b.failures),
            None => Duration::ZERO,
        }
    }

    /// Wait as long as [`LoginGuard::delay`] says.
    pub async fn wait(&self, ip: IpAddr) {
        let delay = self.delay(ip);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// A wrong password (or unknown user) from `ip`; `port` and `user` go into the one
    /// log line of the burst.
    pub fn failed(&self, ip: IpAddr, port: &str, user: &str) {
        let mut bursts = self.bursts.locked();
        if bursts.len() >= MAX_ADDRESSES && !bursts.contains_key(&ip) {
            bursts.retain(|_, b| b.last.elapsed() < QUIET);
            if bursts.len() >= MAX_ADDRESSES
                && let Some(oldest) = bursts.iter().min_by_key(|(_, b)| b.last).map(|(a, _)| *a)
            {
                bursts.remove(&oldest);
            }
        }
        let burst = bursts.entry(ip).or_insert(Burst {
            failures: 0,
            last: Instant::now(),
        });
        if burst.last.elapsed() >= QUIET {
            ended(ip, burst.failures);
            burst.failures = 0;
        }
        burst.failures = burst.failures.saturating_add(1);
        burst.last = Instant::now();
        if burst.failures == 1 {
            warn!(
                %ip,
                user,
                "{port}: password authentication failed; further failures from this address are slowed (up to {}s per attempt) and logged once when they stop",
                MAX_DELAY.as_secs()
            );
        }
    }

    /// A successful login from `ip` ends its burst.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Some(b) = self.bursts.locked().remove(&ip) {
            ended(ip, b.failures);
        }
    }

    /// Failures counted now for `ip` (for tests).
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.bursts.locked().get(&ip).map_or(0, |b| b.failures)
    }
}

/// The wait before the attempt that follows `failures` failures.
fn delay_after(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doubled = FIRST_DELAY.saturating_mul(1u32 << (failures - 1).min(16));
    doubled.min(MAX_DELAY)
}

/// The one line at the end of a burst (the first failure logged its own).
fn ended(ip: IpAddr, failures: u32) {
    if failures > 1 {
        warn!(%ip, "{failures} failed logins from this address in a row");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(1), Duration::from_millis(100));
        assert_eq!(delay_after(2), Duration::from_millis(200));
        assert_eq!(delay_after(4), Duration::from_millis(800));
        assert_eq!(delay_after(7), MAX_DELAY);
        assert_eq!(delay_after(10_000), MAX_DELAY);
        let guard = LoginGuard::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            guard.failed(a, "test", "eve");
        }
        assert_eq!(guard.failures(a), 3);
        assert_eq!(guard.delay(a), Duration::from_millis(400));
        // Another address is not slowed.
        assert_eq!(guard.delay(b), Duration::ZERO);
        guard.succeeded(a);
        assert_eq!(guard.delay(a), Duration::ZERO);
    }
}
