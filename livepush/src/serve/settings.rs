//! The settings of a server ([`ServeConfig`]), read through the same kind of table as the hub's.

use std::time::Duration;

use crate::config::ConfigError;
use crate::config::{as_count, as_time, check_ranges, count, read_vars, Setting, Unit, Value};

/// Settings of [`serve`](crate::serve()): the limits of a connection, as opposed to the hub's
/// limits of a stream. The variables, ranges and defaults are listed at
/// [`ServeConfig::from_env`].
///
/// SSE streams are not affected by the header-read and idle timeouts: once its head is read, a
/// stream lives until its client, the hub or the write deadline ends it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_pending_heads: usize,
    pub(crate) max_pending_heads_per_peer: usize,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) drain_timeout: Duration,
}

/// Each setting, read; the `Serve` method of the same name (or [`ServeConfig::from_env`]) sets it.
impl ServeConfig {
    /// Longest wait for a request head (default 10 s). The first head of a connection must be
    /// complete this long after the accept, or the connection is closed: a client that sends
    /// half a head (slow-loris) holds a socket for this long at most. On HTTP/1.1 it also
    /// applies to every later head, counted from the end of the previous response, so it
    /// also bounds how long an idle keep-alive connection stays open.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// Longest time a request body may take to arrive, counted from its request's head
    /// (default 30 s). A body still incomplete then fails with an error the handler's
    /// extractor answers (axum: `400`), and the connection is closed, so clients that trickle a
    /// body one byte at a time cannot hold descriptors for longer.
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }

    /// A connection with no request in flight is closed after this long (default 60 s; HTTP/2
    /// gets a `GOAWAY`). Open SSE streams are requests in flight and never idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Most accepted connections that have not completed their first request head (default
    /// 512). Above it the server accepts nothing until one completes or times out, so clients
    /// that never finish a head cannot take every file descriptor of the process.
    pub fn max_pending_heads(&self) -> usize {
        self.max_pending_heads
    }

    /// Most of those connections from one peer address (default 256, half the total), so one
    /// address cannot take every pending place and lock the others out. A new connection from
    /// an address that holds this many is parked, unread, and takes its place in turn (up to
    /// 4,096 parked; beyond that it is closed at once). Behind a proxy every client has the
    /// proxy's address: raise it to `max_pending_heads` there.
    pub fn max_pending_heads_per_peer(&self) -> usize {
        self.max_pending_heads_per_peer
    }

    /// A write that the peer takes no byte of for this long fails and resets the connection
    /// (default 10 s; `None` waits for ever). This is what frees a client that stopped reading:
    /// its slot, its descriptor, its queue and the kernel's socket buffers. On HTTP/2 the same
    /// deadline resets a single stream whose client stopped taking its data while the
    /// connection serves the others.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    /// After the shutdown signal, how long connections may take to send what they hold before
    /// they are aborted (default 5 s), so the process exits on time whatever its clients do.
    pub fn drain_timeout(&self) -> Duration {
        self.drain_timeout
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_pending_heads: 512,
            max_pending_heads_per_peer: 256,
            write_timeout: Some(Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

impl ServeConfig {
    /// Reads the server's variables over the defaults.
    ///
    /// | setting | variable | unit | range | default |
    /// | --- | --- | --- | --- | --- |
    /// | `header_read_timeout` | `LIVEPUSH_HEADER_READ_TIMEOUT_SECS` | s | more than 0, at most 3600 | 10 |
    /// | `body_read_timeout` | `LIVEPUSH_BODY_READ_TIMEOUT_SECS` | s | more than 0, at most 3600 | 30 |
    /// | `idle_timeout` | `LIVEPUSH_IDLE_TIMEOUT_SECS` | s | more than 0, at most 86400 | 60 |
    /// | `max_pending_heads` | `LIVEPUSH_MAX_PENDING_HEADS` | connections | 1 to 1048576 | 512 |
    /// | `max_pending_heads_per_peer` | `LIVEPUSH_MAX_PENDING_HEADS_PER_PEER` | connections | 1 to 1048576 | 256 |
    /// | `write_timeout` | `LIVEPUSH_WRITE_TIMEOUT_SECS` | s | 0 to 3600 | 10 |
    /// | `drain_timeout` | `LIVEPUSH_DRAIN_SECS` | s | 0 to 3600 | 5 |
    ///
    /// A write timeout of 0 turns the write deadline off. An empty variable counts as unset; a
    /// value of the wrong form is an error that names the variable.
    ///
    /// ```
    /// let config = livepush::serve::ServeConfig::from_env().expect("valid LIVEPUSH_* variables");
    /// assert!(config.max_pending_heads() >= 1);
    /// ```
    pub fn from_env() -> Result<ServeConfig, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ServeConfig::from_env`], reading variables through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ServeConfig, ConfigError> {
        let mut config = ServeConfig::default();
        read_vars(SETTINGS, &mut config, |name| {
            lookup(name).filter(|v| !v.trim().is_empty())
        })?;
        Ok(config)
    }

    /// Checks every setting against its range (the table of [`ServeConfig::from_env`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ranges(SETTINGS, self)
    }
}

/// Whole seconds: the server's times are read from the environment in seconds, and code may
/// give any value in the same range.
fn secs(d: Duration) -> Option<Value> {
    Some(Value::Time(d))
}

/// Every setting of [`ServeConfig`].
const SETTINGS: &[Setting<ServeConfig>] = &[
    Setting {
        name: "header_read_timeout",
        var: Some("LIVEPUSH_HEADER_READ_TIMEOUT_SECS"),
        unit: Unit::Seconds,
        min: 1,
        max: 3600,
        expected: "seconds, more than 0 and at most 3600",
        get: |c| secs(c.header_read_timeout),
        set: |c, v| c.header_read_timeout = as_time(v),
    },
    Setting {
        name: "body_read_timeout",
        var: Some("LIVEPUSH_BODY_READ_TIMEOUT_SECS"),
        unit: Unit::Seconds,
        min: 1,
        max: 3600,
        expected: "seconds, more than 0 and at most 3600",
        get: |c| secs(c.body_read_timeout),
        set: |c, v| c.body_read_timeout = as_time(v),
    },
    Setting {
        name: "idle_timeout",
        var: Some("LIVEPUSH_IDLE_TIMEOUT_SECS"),
        unit: Unit::Seconds,
        min: 1,
        max: 86_400,
        expected: "seconds, more than 0 and at most 86400",
        get: |c| secs(c.idle_timeout),
        set: |c, v| c.idle_timeout = as_time(v),
    },
    Setting {
        name: "max_pending_heads",
        var: Some("LIVEPUSH_MAX_PENDING_HEADS"),
        unit: Unit::Count("connections"),
        min: 1,
        max: 1 << 20,
        expected: "a whole number from 1 to 1048576",
        get: |c| count(c.max_pending_heads),
        set: |c, v| c.max_pending_heads = as_count(v),
    },
    Setting {
        name: "max_pending_heads_per_peer",
        var: Some("LIVEPUSH_MAX_PENDING_HEADS_PER_PEER"),
        unit: Unit::Count("connections"),
        min: 1,
        max: 1 << 20,
        expected: "a whole number from 1 to 1048576",
        get: |c| count(c.max_pending_heads_per_peer),
        set: |c, v| c.max_pending_heads_per_peer = as_count(v),
    },
    Setting {
        name: "write_timeout",
        var: Some("LIVEPUSH_WRITE_TIMEOUT_SECS"),
        unit: Unit::Seconds,
        min: 0,
        max: 3600,
        expected: "seconds from 0 (none) to 3600",
        get: |c| secs(c.write_timeout.unwrap_or(Duration::ZERO)),
        set: |c, v| c.write_timeout = Some(as_time(v)).filter(|d| !d.is_zero()),
    },
    Setting {
        name: "drain_timeout",
        var: Some("LIVEPUSH_DRAIN_SECS"),
        unit: Unit::Seconds,
        min: 0,
        max: 3600,
        expected: "seconds from 0 to 3600",
        get: |c| secs(c.drain_timeout),
        set: |c, v| c.drain_timeout = as_time(v),
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_serve_variables() {
        let vars = [
            ("LIVEPUSH_HEADER_READ_TIMEOUT_SECS", "2"),
            ("LIVEPUSH_BODY_READ_TIMEOUT_SECS", "7"),
            ("LIVEPUSH_IDLE_TIMEOUT_SECS", "3"),
            ("LIVEPUSH_MAX_PENDING_HEADS", "4"),
            ("LIVEPUSH_MAX_PENDING_HEADS_PER_PEER", "2"),
            ("LIVEPUSH_WRITE_TIMEOUT_SECS", "0"),
            ("LIVEPUSH_DRAIN_SECS", "6"),
        ];
        let lookup = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let c = ServeConfig::from_lookup(lookup).unwrap();
        assert_eq!(c.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.body_read_timeout, Duration::from_secs(7));
        assert_eq!(c.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.max_pending_heads, 4);
        assert_eq!(c.max_pending_heads_per_peer, 2);
        assert_eq!(c.write_timeout, None);
        assert_eq!(c.drain_timeout, Duration::from_secs(6));
        for (var, bad) in [
            ("LIVEPUSH_HEADER_READ_TIMEOUT_SECS", "0"),
            ("LIVEPUSH_BODY_READ_TIMEOUT_SECS", "3601"),
            ("LIVEPUSH_MAX_PENDING_HEADS_PER_PEER", "0"),
            ("LIVEPUSH_DRAIN_SECS", "soon"),
        ] {
            let error = ServeConfig::from_lookup(|k| (k == var).then(|| bad.to_owned()));
            assert!(error.unwrap_err().to_string().contains(var), "{var}={bad}");
        }
        assert!(ServeConfig::default().validate().is_ok());
        let zero = ServeConfig {
            body_read_timeout: Duration::ZERO,
            ..ServeConfig::default()
        };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn the_doc_table_lists_every_setting_as_the_table_holds_it() {
        let source = include_str!("settings.rs");
        for row in crate::config::doc_rows(SETTINGS, &ServeConfig::default()) {
            assert!(
                source.contains(&format!("{row}\n")),
                "missing or stale doc row:\n{row}"
            );
        }
    }
}
