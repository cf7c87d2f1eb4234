//! Cancelling running statements. pgwire cancels a statement only while its handler
//! runs; Weir's results are computed while rows stream out, so each connection also
//! gets a [`CancelFlag`] that the result stream watches. A CancelRequest (pid and
//! secret key from start-up) fires both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::locks::Unpoisoned;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use pgwire::api::ConnectionManager;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::SecretKey;
use tokio::sync::Notify;

/// One connection's cancel signal: an epoch that a CancelRequest advances.
#[derive(Default)]
pub struct CancelFlag {
    epoch: AtomicU64,
    notify: Notify,
}

impl CancelFlag {
    /// The current epoch; a statement started now is cancelled once it moves.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn cancel(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    async fn cancelled_since(&self, epoch: u64) {
        loop {
            let notified = self.notify.notified();
            if self.epoch() != epoch {
                return;
            }
            notified.await;
        }
    }
}

type Key = (i32, Bytes);

/// The cancel flags of open connections, by (pid, secret key).
pub struct Cancels {
    flags: Mutex<HashMap<Key, Arc<CancelFlag>>>,
    pgwire: DefaultCancelHandler,
}

/// Removes a connection's flag when the connection ends.
pub struct Registration {
    cancels: Arc<Cancels>,
    key: Key,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancels.flags.locked().remove(&self.key);
    }
}

impl Cancels {
    pub fn new(connections: Arc<ConnectionManager>) -> Arc<Self> {
        Arc::new(Cancels {
            flags: Mutex::new(HashMap::new()),
            pgwire: DefaultCancelHandler::new(connections),
        })
    }

    /// Give a new connection its flag.
    pub fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: &SecretKey,
    ) -> (Arc<CancelFlag>, Registration) {
        let key = (pid, secret.to_bytes());
        let flag = Arc::new(CancelFlag::default());
        self.flags.locked().insert(key.clone(), flag.clone());
        (
            flag,
            Registration {
                cancels: self.clone(),
                key,
            },
        )
    }
}

#[async_trait]
impl CancelHandler for Cancels {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let flag = self
            .flags
            .locked()
            .get(&(request.pid, request.secret_key.to_bytes()))
            .cloned();
        if let Some(flag) = flag {
            flag.cancel();
        }
        self.pgwire.on_cancel_request(request).await;
    }
}

/// 57014 query_canceled, for `why` (`user request`, `statement timeout`).
fn canceled(why: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "57014".into(),
        format!("canceling statement due to {why}"),
    )))
}

/// Run `work` until it ends, `deadline` (the session's `statement_timeout`) passes, or
/// the connection's `flag` moves (a CancelRequest): the statements that do their work
/// before any row streams (FLUSH, COPY, CREATE TABLE AS, CREATE MATERIALIZED VIEW…).
pub async fn bounded<T>(
    flag: Option<Arc<CancelFlag>>,
    deadline: Option<tokio::time::Instant>,
    work: impl std::future::Future<Output = PgWireResult<T>>,
) -> PgWireResult<T> {
    let epoch = flag.as_ref().map(|f| f.epoch());
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    let cancelled = async {
        match (&flag, epoch) {
            (Some(f), Some(e)) => f.cancelled_since(e).await,
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = cancelled => Err(canceled("user request")),
        _ = expired => Err(canceled("statement timeout")),
        result = work => result,
    }
}

/// Rows that end with a 57014 error as soon as the connection's flag moves past `epoch`,
/// or once `deadline` (the session's `statement_timeout`) passes.
pub fn cancellable<S, T>(
    rows: S,
    flag: Arc<CancelFlag>,
    epoch: u64,
    deadline: Option<tokio::time::Instant>,
) -> impl Stream<Item = PgWireResult<T>> + Send
where
    S: Stream<Item = PgWireResult<T>> + Send + 'static,
    T: Send + 'static,
{
    futures::stream::unfold(
        (rows.boxed(), flag, false),
        move |(mut rows, flag, done)| async move {
            if done {
                return None;
            }
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = flag.cancelled_since(epoch) => Some((Err(canceled("user request")), (rows, flag, true))),
                _ = expired => Some((Err(canceled("statement timeout")), (rows, flag, true))),
                item = rows.next() => item.map(|item| (item, (rows, flag, false))),
            }
        },
    )
}
