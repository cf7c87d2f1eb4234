//! Connections that have not authenticated yet, on both ports: their own small pool
//! (`max_unauthenticated_connections`), apart from `max_connections`. When it is full, a
//! new connection closes the oldest one (waiting for a while) of the address that holds
//! the most, so sockets that never log in cannot keep anyone else out, while a burst of
//! clients logging in at once is let through.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::locks::Unpoisoned;

/// The pool of connections waiting to authenticate.
pub struct Pending {
    max: usize,
    /// By arrival: the address, when it came, and what closes the connection.
    waiting: Mutex<BTreeMap<u64, (IpAddr, Instant, CancellationToken)>>,
    next: std::sync::atomic::AtomicU64,
    /// Connections closed to make room (to log once per burst).
    evicted: std::sync::atomic::AtomicU64,
}

/// A connection's place in the pool; it leaves the pool when authenticated or dropped.
pub struct Waiting {
    pool: Arc<Pending>,
    id: u64,
    /// Cancelled when the connection was closed to make room for another.
    pub evicted: CancellationToken,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.pool.waiting.locked().remove(&self.id);
    }
}

impl Pending {
    pub fn new(max: usize) -> Arc<Pending> {
        Arc::new(Pending {
            max: max.max(1),
            waiting: Mutex::new(BTreeMap::new()),
            next: Default::default(),
            evicted: Default::default(),
        })
    }

    /// A new connection from `ip` joins the pool. When it is full, the oldest connection
    /// waiting for longer than [`YOUNG`] of the address holding the most is closed; when
    /// all are younger (clients logging in at once), the pool stretches up to
    /// [`STRETCH`] times its size before the oldest of that address is closed anyway.
    pub fn join(self: &Arc<Self>, ip: IpAddr) -> Waiting {
        use std::sync::atomic::Ordering;
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let token = CancellationToken::new();
        let mut waiting = self.waiting.locked();
        if waiting.len() >= self.max {
            let hard = waiting.len() >= self.max * STRETCH;
            let victim = victim(&waiting, ip, !hard);
            if let Some((addr, _, t)) = victim.and_then(|v| waiting.remove(&v)) {
                t.cancel();
                if self
                    .evicted
                    .fetch_add(1, Ordering::SeqCst)
                    .is_multiple_of(1000)
                {
                    warn!(
                        %addr,
                        "closed a connection that had not authenticated to make room (max_unauthenticated_connections = {}); further ones are logged every 1000",
                        self.max
                    );
                }
            }
        }
        waiting.insert(id, (ip, Instant::now(), token.clone()));
        Waiting {
            pool: Arc::clone(self),
            id,
            evicted: token,
        }
    }

    /// Connections waiting now.
    pub fn len(&self) -> usize {
        self.waiting.locked().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Connections waiting for less than this are not closed to make room (while the pool
/// can stretch).
const YOUNG: Duration = Duration::from_millis(250);
/// How far the pool stretches for a burst of young connections.
const STRETCH: usize = 8;

/// The connection to close: the oldest of the address holding the most, among those
/// older than [`YOUNG`] when `old_only`; on a tie, another address than the newcomer's
/// `ip`, so a client's new connection does not push out its own.
fn victim(
    waiting: &BTreeMap<u64, (IpAddr, Instant, CancellationToken)>,
    ip: IpAddr,
    old_only: bool,
) -> Option<u64> {
    let eligible = |at: &Instant| !old_only || at.elapsed() >= YOUNG;
    let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (a, at, _) in waiting.values() {
        if eligible(at) {
            *counts.entry(*a).or_default() += 1;
        }
    }
    let mut ranked: Vec<(IpAddr, usize)> = counts.into_iter().collect();
    ranked.sort_by_key(|r| (std::cmp::Reverse(r.1), r.0 == ip));
    ranked.into_iter().find_map(|(addr, _)| {
        waiting
            .iter()
            .find(|(_, (a, at, _))| *a == addr && eligible(at))
            .map(|(id, _)| *id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_closes_the_oldest_of_the_busiest_address() {
        let pool = Pending::new(2);
        let attacker: IpAddr = "10.0.0.66".parse().unwrap();
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        // A burst of young connections stretches the pool (to 2 × 8).
        let a1 = pool.join(attacker);
        let c1 = pool.join(client);
        let burst: Vec<_> = (0..14).map(|_| pool.join(attacker)).collect();
        assert_eq!(pool.len(), 16);
        assert!(!a1.evicted.is_cancelled());
        // Stretched to the end: the attacker's oldest goes, the client's stays.
        let a2 = pool.join(attacker);
        assert!(a1.evicted.is_cancelled());
        assert!(!c1.evicted.is_cancelled());
        assert_eq!(pool.len(), 16);
        // Once they are old, a newcomer closes an old one of the busiest address at once.
        std::thread::sleep(YOUNG);
        drop(burst);
        let c2 = pool.join(client);
        assert!(!c1.evicted.is_cancelled() && !c2.evicted.is_cancelled());
        assert!(a2.evicted.is_cancelled());
        drop((c1, c2));
        assert!(pool.is_empty());
    }
}
