//! The relay: publishes committed outbox rows to the hub's broker, in order, and marks them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::store::{PendingRow, Round};
use super::{now_micros, Outbox};
use crate::broker::BrokerError;
use crate::config::ConfigError;
use crate::hub::{checked_publication, Hub};
use crate::trace::Trace;

/// First and longest wait between two rounds that failed (database or broker down).
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A fault hook of the tests: called with each row id right after the broker acknowledged it;
/// `true` makes the relay stop there as if its process died (nothing marked, round rolled back).
/// Compiled only into unit tests and builds with the hidden `__test-hooks` feature (the
/// integration suite's).
#[cfg(any(test, feature = "__test-hooks"))]
type Fault = Arc<dyn Fn(i64) -> bool + Send + Sync>;

/// A relay of one [`Outbox`] into one [`Hub`]'s broker, to configure and [start](Relay::start).
///
/// Run one in every process that should relay ([`Relay::start_if_enabled`] reads
/// `LIVEPUSH_OUTBOX_RELAY`), or in a process of its own: one
/// relay works at a time whatever the number of processes, and another takes over within a
/// poll interval when it stops or dies.
#[must_use]
pub struct Relay {
    outbox: Outbox,
    hub: Hub,
    batch: usize,
    poll: Duration,
    retention: Duration,
    cleanup_every: Duration,
    #[cfg(any(test, feature = "__test-hooks"))]
    fault: Option<Fault>,
}

impl Relay {
    pub(super) fn new(outbox: Outbox, hub: Hub) -> Self {
        let poll = outbox.inner.store.default_poll();
        Relay {
            outbox,
            hub,
            batch: 256,
            poll,
            retention: Duration::from_secs(3600),
            cleanup_every: Duration::from_secs(60),
            #[cfg(any(test, feature = "__test-hooks"))]
            fault: None,
        }
    }

    /// Rows published per round before they are marked (default 256).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch = rows.max(1);
        self
    }

    /// How often the relay looks for rows without being woken (default 500 ms on PostgreSQL,
    /// which wakes it with `NOTIFY`; 50 ms on SQLite, for commits of other processes).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// How long relayed rows are kept before the relay deletes them (default 1 hour; at least
    /// the broker's dedupe window is sensible, so that an old row is never relayed twice).
    pub fn retention(mut self, keep: Duration) -> Self {
        self.retention = keep;
        self
    }

    /// How often the relay deletes relayed rows older than the retention (default 60 s).
    pub fn cleanup_every(mut self, every: Duration) -> Self {
        self.cleanup_every = every.max(Duration::from_millis(1));
        self
    }

    /// Test builds only (the hidden `__test-hooks` feature): see [`Fault`].
    #[doc(hidden)]
    #[cfg(any(test, feature = "__test-hooks"))]
    pub fn fault_after_publish(
        mut self,
        fault: impl Fn(i64) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.fault = Some(Arc::new(fault));
        self
    }

    /// Starts the relay ([`Relay::start`]) unless `LIVEPUSH_OUTBOX_RELAY` says this process does
    /// not relay: `on`/`off` (default on; also `true`/`false`, `1`/`0`, `yes`/`no`). Another
    /// value is an error that names the variable, so a service can refuse to start.
    ///
    /// ```no_run
    /// # #[cfg(feature = "outbox-sqlite")]
    /// # async fn run(outbox: livepush::outbox::Outbox, hub: livepush::Hub) -> Result<(), livepush::error::ConfigError> {
    /// let relay = outbox.relay(&hub).start_if_enabled()?;
    /// // … serve; after the graceful shutdown:
    /// if let Some(relay) = relay {
    ///     relay.shutdown().await;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn start_if_enabled(self) -> Result<Option<RelayHandle>, ConfigError> {
        let enabled = relay_enabled(std::env::var(RELAY_VAR).ok())?;
        Ok(enabled.then(|| self.start()))
    }

    /// Starts the relay on the current Tokio runtime. It creates the outbox tables if needed,
    /// then relays until [`RelayHandle::shutdown`] (or the handle is dropped). Database and
    /// broker failures are logged, counted (`livepush_outbox_errors_total`) and retried with
    /// backoff, for ever.
    pub fn start(self) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.run(stopped));
        RelayHandle {
            stop,
            task: Some(task),
        }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let inner = &self.outbox.inner;
        let table = inner.table.as_str();
        let wake = inner.wake.clone();
        let metrics = self.hub.metrics().clone();
        let mut backoff = BACKOFF_MIN;
        // The schema and this outbox's id, once the database answers.
        let instance = loop {
            let ready = async {
                inner.store.ensure_schema(table).await?;
                inner.store.instance(table).await
            };
            match ready.await {
                Ok(instance) => break instance,
                Err(e) => {
                    metrics.outbox_errors.inc();
                    tracing::warn!(error = %e, table, "outbox relay cannot reach its database; retrying");
                    if pause(&mut stop, &mut backoff).await {
                        return;
                    }
                }
            }
        };
        let _listener = self.listen(wake.clone());
        tracing::info!(table, database = inner.store.kind(), "outbox relay started");
        let mut last_cleanup = tokio::time::Instant::now();
        backoff = BACKOFF_MIN;
        loop {
            match self.relay_all(&instance).await {
                Ok(Outcome::Done) => backoff = BACKOFF_MIN,
                Ok(Outcome::Died) => {
                    tracing::warn!(table, "outbox relay stopped by its fault hook");
                    return;
                }
                Err(e) => {
                    metrics.outbox_errors.inc();
                    // Rows wait while the broker (or the database) fails: the lag must show it.
                    self.record_lag().await;
                    tracing::warn!(error = %e, table, "outbox relay round failed; retrying with backoff");
                    if pause(&mut stop, &mut backoff).await {
                        break;
                    }
                    continue;
                }
            }
            if last_cleanup.elapsed() >= self.cleanup_every {
                last_cleanup = tokio::time::Instant::now();
                self.cleanup().await;
            }
            tokio::select! {
                _ = stop.changed() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.poll) => {}
            }
            if *stop.borrow() {
                break;
            }
        }
        // What committed while the last round ran goes out before the relay ends.
        if let Err(e) = self.relay_all(&instance).await {
            tracing::warn!(error = %e, table, "outbox relay's last round failed; another relay or the next start publishes those rows");
        }
        tracing::info!(table, "outbox relay stopped");
    }

    /// PostgreSQL: a task that LISTENs and wakes the relay on every NOTIFY, reconnecting with
    /// backoff (the poll covers notifications lost meanwhile). Aborted with the guard.
    fn listen(&self, wake: Arc<Notify>) -> Option<AbortOnDrop> {
        #[cfg(feature = "outbox-postgres")]
        if let Some(pool) = self.outbox.inner.store.notify_pool() {
            let pool = pool.clone();
            let channel = self.outbox.inner.table.clone();
            return Some(AbortOnDrop(tokio::spawn(async move {
                let mut backoff = BACKOFF_MIN;
                loop {
                    let listened = async {
                        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                        listener.listen(&channel).await?;
                        // Rows committed before LISTEN took effect are found by this round.
                        wake.notify_one();
                        loop {
                            listener.recv().await?;
                            wake.notify_one();
                        }
                    };
                    let result: Result<(), sqlx::Error> = listened.await;
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "outbox LISTEN connection lost; reconnecting");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            })));
        }
        let _ = wake;
        None
    }

    /// Rounds until no committed row is left (or another relay holds the lock).
    async fn relay_all(&self, instance: &str) -> Result<Outcome, RelayError> {
        loop {
            let (outcome, rows) = self.round(instance).await?;
            if matches!(outcome, Outcome::Died) || rows < self.batch {
                self.record_lag().await;
                return Ok(outcome);
            }
        }
    }

    /// One round: lock, read a batch, publish it in order, mark what the broker acknowledged,
    /// commit. A broker error ends the round after marking what went out before it, so the
    /// next round starts with the row that failed: nothing is lost or reordered.
    async fn round(&self, instance: &str) -> Result<(Outcome, usize), RelayError> {
        let inner = &self.outbox.inner;
        let table = inner.table.as_str();
        let Some(mut tx) = inner.store.begin_round(table).await? else {
            return Ok((Outcome::Done, 0));
        };
        let rows = tx.pending(table, self.batch as i64).await?;
        let count = rows.len();
        let mut done = Vec::with_capacity(count);
        let mut failure = None;
        for row in &rows {
            match self.publish(instance, row).await {
                Ok(event_id) => done.push((row.id, event_id)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if self.dies_after(row.id) {
                drop(tx);
                return Ok((Outcome::Died, 0));
            }
        }
        self.finish(tx, &done).await?;
        let relayed = done.iter().filter(|(_, id)| id.is_some()).count();
        self.hub.metrics().outbox_relayed.inc_by(relayed as u64);
        match failure {
            Some(e) => Err(RelayError::Broker(e)),
            None => Ok((Outcome::Done, count)),
        }
    }

    /// Whether the test fault hook stops the relay after `row` (never in other builds).
    fn dies_after(&self, row: i64) -> bool {
        #[cfg(any(test, feature = "__test-hooks"))]
        if let Some(fault) = &self.fault {
            return fault(row);
        }
        let _ = row;
        false
    }

    async fn finish(
        &self,
        mut tx: Box<dyn Round>,
        done: &[(i64, Option<i64>)],
    ) -> Result<(), RelayError> {
        let table = self.outbox.inner.table.as_str();
        tx.mark(table, now_micros(), done).await?;
        tx.commit().await?;
        // Cursors of this process that wait for these rows look at once.
        self.outbox.inner.relayed.notify_waiters();
        Ok(())
    }

    /// Publishes one row once; `Ok(None)` for a row that can never be published (written by
    /// hand with an invalid topic, or larger than the hub accepts): it is marked, logged and
    /// counted instead of blocking every row behind it.
    async fn publish(&self, instance: &str, row: &PendingRow) -> Result<Option<i64>, BrokerError> {
        let max = self.hub.config().max_event_bytes;
        let data = Bytes::from(row.data.clone().into_bytes());
        let (event, trace) = Trace::split(&row.event);
        let publication = match checked_publication(
            &row.topic,
            event,
            row.category.as_deref(),
            data,
            max,
            trace,
        ) {
            Ok(p) => p,
            Err(e) => {
                self.hub.metrics().outbox_errors.inc();
                tracing::error!(row = row.id, error = %e, "outbox row cannot be published; marked and skipped");
                return Ok(None);
            }
        };
        let key = format!("outbox:{instance}:{}", row.id);
        let id = self.hub.publish_relayed(&publication, &key).await?;
        Ok(Some(id.get() as i64))
    }

    async fn record_lag(&self) {
        let inner = &self.outbox.inner;
        if let Ok(oldest) = inner.store.oldest_pending(&inner.table).await {
            let lag = oldest.map_or(0.0, |at| (now_micros() - at).max(0) as f64 / 1e6);
            self.hub.metrics().outbox_lag.set(lag);
        }
    }

    async fn cleanup(&self) {
        let inner = &self.outbox.inner;
        let before = now_micros() - self.retention.as_micros() as i64;
        match inner.store.cleanup(&inner.table, before).await {
            // Every run is logged, the ones that delete nothing too: a test (and an operator
            // reading debug logs) can tell "ran and kept the rows" from "has not run yet".
            Ok(n) => tracing::debug!(
                rows = n,
                "outbox: cleanup ran (relayed rows past retention deleted)"
            ),
            Err(e) => tracing::warn!(error = %e, "outbox cleanup failed; retried later"),
        }
    }
}

/// The variable that says whether a process relays.
const RELAY_VAR: &str = "LIVEPUSH_OUTBOX_RELAY";

/// Reads [`RELAY_VAR`]'s value (`None`: unset).
fn relay_enabled(value: Option<String>) -> Result<bool, ConfigError> {
    let Some(value) = value else { return Ok(true) };
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::InvalidVar {
            var: RELAY_VAR,
            value,
            expected: "on or off",
        }),
    }
}

/// Waits `backoff` (doubling it for next time) unless asked to stop; `true` when stopping.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        _ = stop.changed() => true,
        () = tokio::time::sleep(wait) => *stop.borrow(),
    }
}

enum Outcome {
    Done,
    /// The fault hook fired.
    Died,
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(BrokerError),
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running relay. Dropping it stops the relay at once (a round in flight rolls back and is
/// redone by the next relay); [`RelayHandle::shutdown`] lets the round finish.
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RelayHandle {
    /// Stops after the current round, waiting at most 5 s for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// Whether the relay task ended (stopped, or stopped by the test fault hook).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_relays_unless_told_off() {
        for on in [
            None,
            Some(""),
            Some("on"),
            Some(" ON "),
            Some("true"),
            Some("1"),
            Some("yes"),
        ] {
            assert_eq!(relay_enabled(on.map(str::to_owned)), Ok(true), "{on:?}");
        }
        for off in ["off", "Off", "false", "0", "no"] {
            assert_eq!(relay_enabled(Some(off.to_owned())), Ok(false), "{off}");
        }
        let refused = relay_enabled(Some("maybe".to_owned())).unwrap_err();
        assert!(
            refused.to_string().contains("LIVEPUSH_OUTBOX_RELAY"),
            "{refused}"
        );
    }
}
