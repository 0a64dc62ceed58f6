//! The thread that renews this instance's presence lease ([`super::lease`]): an OS thread of
//! its own, with a current-thread tokio runtime and a Redis connection of its own (made on
//! that runtime, which drives it). The application's runtime may be saturated for seconds (a
//! reconnect storm, a burst of deliveries, a blocking handler) without the lease lapsing:
//! only the process dying, or Redis being unreachable from it, ends a lease.
//!
//! The thread only drives [`Leases::tick`] every [`RENEW_EVERY`] for the identity the
//! presence store names ([`Renewal::renew_as`]), and keeps what the ticks found for the store's
//! maintenance on the application's runtime ([`Renewal::take`]): whether the lease was lost
//! (then the store takes a new identity) and which instances' leases ran out (then it reaps
//! them). It ends, with its connection, once the [`Renewal`] is dropped.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::RedisError;
use tokio::sync::oneshot;

use super::lease::{Leases, Tick, RENEW_EVERY};
use super::target::{self, ClusterTarget, Target};

/// How the renewal thread opens its own connection to the node that holds the lease key.
pub(super) trait Dial: Send + 'static {
    /// The connection the lease script runs on.
    type Conn: ConnectionLike + Send;
    /// A new connection (called on the renewal thread's runtime).
    fn dial(&mut self) -> impl Future<Output = Result<Self::Conn, RedisError>> + Send;
}

/// One server, or the master the sentinels name now (asked again at every connection).
impl Dial for Target {
    type Conn = MultiplexedConnection;
    async fn dial(&mut self) -> Result<MultiplexedConnection, RedisError> {
        let client = self.resolve_in_time().await?;
        let config = target::timeouts();
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// A cluster connection routes the lease script to the node of the prefix's slot.
impl Dial for ClusterTarget {
    type Conn = ClusterConnection;
    async fn dial(&mut self) -> Result<ClusterConnection, RedisError> {
        self.client(None)?.get_async_connection().await
    }
}

/// What the ticks found since the store last looked.
#[derive(Default)]
struct Found {
    /// The identity to renew ("" before the store registers one).
    identity: String,
    /// The last tick: the identity it renewed, and whether it was renewed.
    last: Option<(String, bool)>,
    /// Other instances whose lease ran out.
    expired: HashSet<String>,
}

/// The renewal thread, as the presence store holds it.
pub(super) struct Renewal {
    found: Arc<Mutex<Found>>,
    /// Starts the thread (the first maintenance calls it); `None` once started.
    start: Mutex<Option<Start>>,
    /// Dropped with the store: the thread ends.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

type Start = Box<dyn FnOnce(oneshot::Receiver<()>) -> std::io::Result<()> + Send>;

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Renewal {
    /// A renewal of the leases in `leases`, on connections from `dial`; its thread starts at
    /// the first [`Renewal::start`].
    pub(super) fn new<D: Dial>(dial: D, leases: Arc<Leases>) -> Self {
        let found = Arc::new(Mutex::new(Found::default()));
        let shared = found.clone();
        let start: Start = Box::new(move |stop| {
            std::thread::Builder::new()
                .name("livepush-lease".into())
                .spawn(move || run(dial, leases, shared, stop))
                .map(drop)
        });
        Renewal {
            found,
            start: Mutex::new(Some(start)),
            stop: Mutex::new(None),
        }
    }

    /// Starts the thread unless it runs already.
    pub(super) fn start(&self) {
        let Some(start) = locked(&self.start).take() else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        match start(rx) {
            Ok(()) => *locked(&self.stop) = Some(tx),
            Err(error) => tracing::error!(%error, "cannot start the presence lease thread"),
        }
    }

    /// From now on, renews `identity`'s lease (starting the thread if needed).
    pub(super) fn renew_as(&self, identity: &str) {
        locked(&self.found).identity = identity.to_owned();
        self.start();
    }

    /// What the ticks found since the last call: the last tick (identity, renewed), and the
    /// expired instances.
    pub(super) fn take(&self) -> (Option<(String, bool)>, Vec<String>) {
        let mut found = locked(&self.found);
        let last = found.last.take();
        (last, found.expired.drain().collect())
    }
}

/// The thread's body: ticks until `stop` fires (or its sender is dropped).
fn run<D: Dial>(
    dial: D,
    leases: Arc<Leases>,
    found: Arc<Mutex<Found>>,
    stop: oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the presence lease thread's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        tokio::select! {
            _ = stop => {}
            _ = renew(dial, &leases, &found) => {}
        }
    });
}

/// Every [`RENEW_EVERY`], one [`Leases::tick`] for the current identity; a failed one drops
/// the connection (the next tick dials again) and is logged when it starts failing.
async fn renew<D: Dial>(mut dial: D, leases: &Leases, found: &Mutex<Found>) {
    let mut conn = None;
    let mut failing = false;
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let identity = locked(found).identity.clone();
        match tick(&mut dial, &mut conn, leases, &identity).await {
            Ok(tick) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("presence lease renewed again");
                }
                let mut found = locked(found);
                found.last = Some((identity, tick.renewed));
                found.expired.extend(tick.expired);
            }
            Err(error) => {
                conn = None;
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cannot renew the presence lease; retrying");
                }
            }
        }
    }
}

async fn tick<D: Dial>(
    dial: &mut D,
    conn: &mut Option<D::Conn>,
    leases: &Leases,
    identity: &str,
) -> Result<Tick, RedisError> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(dial.dial().await?),
    };
    leases.tick(conn, identity).await
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// [`Target`]'s dial, holding `_alive` for as long as the thread keeps it.
    struct Held {
        target: Target,
        _alive: Arc<()>,
    }

    impl Dial for Held {
        type Conn = MultiplexedConnection;
        async fn dial(&mut self) -> Result<MultiplexedConnection, RedisError> {
            self.target.dial().await
        }
    }

    #[test]
    fn the_thread_ends_when_the_renewal_is_dropped() {
        let alive = Arc::new(());
        // nobody listens on port 1: every tick dials again, the thread never ends by itself
        let target = Target::parse("redis://127.0.0.1:1/").unwrap();
        let leases = Arc::new(Leases::new("t:pr:instances".into()));
        let dial = Held {
            target,
            _alive: alive.clone(),
        };
        let renewal = Renewal::new(dial, leases);
        renewal.renew_as("me");
        std::thread::sleep(RENEW_EVERY * 2);
        assert_eq!(Arc::strong_count(&alive), 2, "the thread holds its dial");
        drop(renewal);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&alive) > 1 {
            assert!(Instant::now() < deadline, "the thread outlived its renewal");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
