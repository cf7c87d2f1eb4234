//! Reaching a source again after it failed: the back-off between attempts (100 ms doubling
//! to 5 s), and a reader's record of an outage while it lasts — logged once at warn when it
//! begins and once at info when it ends, and shown in `weir_catalog`.

use std::time::{Duration, Instant};

use super::now_micros;

/// The first wait between attempts.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Exponential back-off: by default `FIRST_DELAY`, doubling up to `MAX_DELAY`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::between(FIRST_DELAY, MAX_DELAY)
    }
}

impl Backoff {
    /// Back-off from `first`, doubling up to `max`.
    pub fn between(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            next: first,
            max,
        }
    }

    /// The wait before the next attempt; the one after is twice as long, up to the cap.
    pub fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A reader's trouble reaching its source, while it lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// The last error, as the source reported it.
    pub error: String,
    /// When the trouble began, in microseconds since the Unix epoch.
    pub since: i64,
    /// When the trouble began, on the monotonic clock.
    pub began: Instant,
    /// Attempts to reach the source again so far.
    pub retries: u64,
}

impl Outage {
    /// The outage in words: its last error, since when, and the attempts made.
    pub fn describe(&self) -> String {
        let since = datafusion::arrow::temporal_conversions::timestamp_us_to_datetime(self.since)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
            .unwrap_or_default();
        format!(
            "{} (retrying since {since}, {} retries)",
            self.error, self.retries
        )
    }
}

/// Whether a reader's source answers, and when to try it again if not.
#[derive(Debug)]
pub struct Health {
    /// What is being reached, for the log (`Kafka topic 't' on brokers 'b'`).
    what: String,
    outage: Option<Outage>,
    backoff: Backoff,
    next_try: Instant,
}

impl Health {
    pub fn new(what: String) -> Self {
        Health {
            what,
            outage: None,
            backoff: Backoff::default(),
            next_try: Instant::now(),
        }
    }

    /// The source failed with `error`: an outage begins (logged at warn, the first attempt
    /// to reach it again is due after `FIRST_DELAY`), or goes on with this as its last error.
    pub fn failed(&mut self, error: String) {
        match &mut self.outage {
            Some(o) => o.error = error,
            None => {
                tracing::warn!(
                    "{} cannot be read, retrying until it answers: {error}",
                    self.what
                );
                self.backoff.reset();
                self.next_try = Instant::now() + self.backoff.delay();
                self.outage = Some(Outage {
                    error,
                    since: now_micros(),
                    began: Instant::now(),
                    retries: 0,
                });
            }
        }
    }

    /// The source answers again: the outage ends (logged at info). `true` if there was one.
    pub fn recovered(&mut self) -> bool {
        let Some(o) = self.outage.take() else {
            return false;
        };
        tracing::info!(
            "{} answers again after {:.1} s ({} retries)",
            self.what,
            o.began.elapsed().as_secs_f64(),
            o.retries
        );
        true
    }

    /// In an outage, and the next attempt is due.
    pub fn due(&self) -> bool {
        self.outage.is_some() && Instant::now() >= self.next_try
    }

    /// An attempt is being made: counted, and the next one scheduled after the back-off.
    pub fn attempt(&mut self) {
        if let Some(o) = &mut self.outage {
            o.retries += 1;
        }
        self.next_try = Instant::now() + self.backoff.delay();
    }

    pub fn outage(&self) -> Option<&Outage> {
        self.outage.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap() {
        let mut b = Backoff::default();
        let delays: Vec<u128> = (0..9).map(|_| b.delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.delay(), FIRST_DELAY);
    }

    #[test]
    fn an_outage_keeps_its_start_and_counts_attempts() {
        let mut h = Health::new("test source".into());
        assert!(!h.due() && h.outage().is_none() && !h.recovered());
        h.failed("down".into());
        let since = h.outage().unwrap().since;
        assert!(!h.due(), "the first attempt waits FIRST_DELAY");
        std::thread::sleep(FIRST_DELAY);
        assert!(h.due());
        h.attempt();
        assert!(!h.due());
        h.failed("still down".into());
        let o = h.outage().unwrap();
        assert_eq!(
            (o.error.as_str(), o.since, o.retries),
            ("still down", since, 1)
        );
        assert!(h.recovered());
        assert!(h.outage().is_none() && !h.due());
    }
}
