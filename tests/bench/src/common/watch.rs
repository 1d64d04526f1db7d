//! State built from watches, each event stamped with the local clock when it arrives, and a wait
//! on that state that fails when nothing changes for too long (a stalled run, not a slow one).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

/// What a watch saw of one object, or of the list it (re)starts from.
pub enum Change<K> {
    /// Created or changed (or listed when the watch (re)started).
    Applied(K),
    /// Deleted.
    Deleted(K),
    /// The watch (re)starts with a list: the objects listed follow as `Applied`.
    Relisting,
    /// The list is complete: an object seen before but not listed since `Relisting` was
    /// deleted meanwhile, without a `Deleted` (the watch had expired).
    Listed,
}

struct Inner<S> {
    state: S,
    changed: Instant,
}

/// State `S`, fed by watches.
pub struct Watched<S> {
    inner: Arc<Mutex<Inner<S>>>,
}

impl<S: Send + 'static> Watched<S> {
    /// Starts from `state`.
    pub fn new(state: S) -> Self {
        let inner = Inner {
            state,
            changed: Instant::now(),
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state.
    pub fn read<T>(&self, read: impl FnOnce(&S) -> T) -> T {
        read(&self.inner().state)
    }

    /// Feeds each change `stream` reports to `record`, with the time it arrived.
    pub fn watch<K: Send + 'static>(
        &self,
        stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
        record: impl Fn(&mut S, Change<K>, Instant) + Send + 'static,
    ) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream.default_backoff());
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                let change = match event {
                    Ok(Event::Apply(object) | Event::InitApply(object)) => Change::Applied(object),
                    Ok(Event::Delete(object)) => Change::Deleted(object),
                    Ok(Event::Init) => Change::Relisting,
                    Ok(Event::InitDone) => Change::Listed,
                    Err(error) => {
                        eprintln!("bench: watch error (retried with backoff): {error}");
                        continue;
                    }
                };
                let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
                record(&mut inner.state, change, now);
                inner.changed = now;
            }
        });
    }

    /// Waits until `done` holds; fails when no watch reported a change for `stall`, with
    /// `summary` of the state.
    pub async fn wait(
        &self,
        what: &str,
        stall: Duration,
        done: impl Fn(&S) -> bool,
        summary: impl Fn(&S) -> String,
    ) -> anyhow::Result<()> {
        loop {
            {
                let inner = self.inner();
                if done(&inner.state) {
                    return Ok(());
                }
                if inner.changed.elapsed() > stall {
                    bail!(
                        "waited for {what}; nothing changed for {stall:?}: {}",
                        summary(&inner.state)
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
