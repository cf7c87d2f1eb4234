//! The threads that run the catalog's objects: each view's pipeline and each sink's
//! runner gets an OS thread of its own with a single-threaded tokio runtime, so that a
//! busy view never holds up the server's workers or another view.

use std::future::Future;

use tokio::sync::oneshot;

use crate::error::{Result, WeirError};

/// Run `body` on a thread of its own named `thread`, on a single-threaded tokio runtime;
/// `body` reports through its sender when it has started, and this returns what it
/// reported.
pub async fn start<F, Fut>(thread: String, body: F) -> Result<()>
where
    F: FnOnce(oneshot::Sender<Result<()>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (ready_tx, ready_rx) = oneshot::channel();
    let what = thread.clone();
    std::thread::Builder::new()
        .name(thread)
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(body(ready_tx)),
                Err(e) => {
                    let _ = ready_tx.send(Err(WeirError::Io(e)));
                }
            }
        })
        .map_err(WeirError::Io)?;
    ready_rx
        .await
        .map_err(|_| WeirError::Internal(format!("thread {what} ended while starting")))?
}
