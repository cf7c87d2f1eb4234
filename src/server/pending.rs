//! Connections that have not authenticated yet, on both ports: their own small pool
//! (`max_unauthenticated_connections`), apart from `max_connections`. When it is full, a
//! new connection closes the oldest one of the address that holds the most, so sockets
//! that never log in cannot keep anyone else out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::locks::Unpoisoned;

/// The pool of connections waiting to authenticate.
pub struct Pending {
    max: usize,
    /// By arrival: the address and what closes the connection.
    waiting: Mutex<BTreeMap<u64, (IpAddr, CancellationToken)>>,
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

    /// A new connection from `ip` joins the pool, closing another when it is full.
    pub fn join(self: &Arc<Self>, ip: IpAddr) -> Waiting {
        use std::sync::atomic::Ordering;
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let token = CancellationToken::new();
        let mut waiting = self.waiting.locked();
        while waiting.len() >= self.max {
            // The address holding the most slots (with the new one counted) gives up its oldest.
            let mut counts: std::collections::HashMap<IpAddr, usize> = Default::default();
            *counts.entry(ip).or_default() += 1;
            for (a, _) in waiting.values() {
                *counts.entry(*a).or_default() += 1;
            }
            let (&top, _) = counts
                .iter()
                .max_by_key(|(_, n)| **n)
                .expect("the new connection is counted");
            let victim = waiting
                .iter()
                .find(|(_, (a, _))| *a == top)
                .map(|(id, _)| *id);
            // The new connection's own address holds the most: its oldest other one goes,
            // or (it holds none other) the oldest of all.
            let victim = victim.or_else(|| waiting.keys().next().copied());
            let Some(victim) = victim else { break };
            if let Some((addr, t)) = waiting.remove(&victim) {
                t.cancel();
                if self.evicted.fetch_add(1, Ordering::SeqCst) % 1000 == 0 {
                    warn!(
                        %addr,
                        "closed a connection that had not authenticated to make room (max_unauthenticated_connections = {}); further ones are logged every 1000",
                        self.max
                    );
                }
            }
        }
        waiting.insert(id, (ip, token.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_closes_the_oldest_of_the_busiest_address() {
        let pool = Pending::new(3);
        let attacker: IpAddr = "10.0.0.66".parse().unwrap();
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let a1 = pool.join(attacker);
        let c1 = pool.join(client);
        let a2 = pool.join(attacker);
        let a3 = pool.join(attacker);
        assert!(a1.evicted.is_cancelled());
        assert!(!c1.evicted.is_cancelled());
        // The attacker keeps connecting: only its own connections go.
        let more: Vec<_> = (0..10).map(|_| pool.join(attacker)).collect();
        assert!(!c1.evicted.is_cancelled());
        assert!(a2.evicted.is_cancelled() && a3.evicted.is_cancelled());
        assert_eq!(pool.len(), 3);
        drop(more);
        assert_eq!(pool.len(), 1);
        drop(c1);
        assert!(pool.is_empty());
    }
}
