//! What the benchmarks measure with: wall and CPU time of the process (user + system,
//! from `/proc/self/stat`), resident memory, percentiles, and the formatting of the
//! figures they print.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on Linux's x86-64 and
/// arm64 ABIs).
const USER_HZ: u64 = 100;

/// CPU time (user + system) used so far by every thread of this process, to 10 ms.
pub fn cpu_time() -> Duration {
    cpu_time_at("/proc/self/stat")
}

/// CPU time used so far by process `pid` (a broker on the same machine), to 10 ms.
pub fn cpu_time_of(pid: u32) -> Duration {
    cpu_time_at(&format!("/proc/{pid}/stat"))
}

fn cpu_time_at(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of proc(5); the first after ')' is field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / USER_HZ)
}

/// Resident set size of this process in bytes (`VmRSS`, the resident field of
/// `/proc/self/statm` in kB).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Wall and CPU time of a stretch of work.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    wall: Instant,
    cpu: Duration,
}

/// What a [`Span`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    pub cpu: Duration,
}

impl Span {
    pub fn start() -> Span {
        Span {
            wall: Instant::now(),
            cpu: cpu_time(),
        }
    }

    pub fn stop(&self) -> Measured {
        Measured {
            wall: self.wall.elapsed(),
            cpu: cpu_time().saturating_sub(self.cpu),
        }
    }
}

impl Measured {
    /// Events per wall-clock second.
    pub fn per_second(&self, events: u64) -> f64 {
        events as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Events per second of CPU time: the rate one fully busy core would reach.
    pub fn per_core(&self, events: u64) -> f64 {
        events as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    /// Cores busy on average (CPU time over wall time).
    pub fn cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// `wall 1.23 s, cpu 2.34 s (1.90 cores)`.
    pub fn describe(&self) -> String {
        format!(
            "wall {:.2} s, cpu {:.2} s ({:.2} cores)",
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.cores()
        )
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate, rounded to a whole number, with thousands separators.
pub fn rate(r: f64) -> String {
    thousands(r.round().max(0.0) as u64)
}

/// Bytes in MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The value below which `q` (0..=1) of the sorted `values` fall (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `2 cores, AMD EPYC, 23.5 GiB`: what the figures were measured on.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "{cores} cores, {model}, {:.1} GiB memory",
        mem_kb as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_percentiles() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn process_counters_read() {
        let before = cpu_time();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_time() >= before);
        assert!(rss_bytes() > 0);
    }
}
