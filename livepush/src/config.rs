//! Hub settings, from code or from the environment.

use std::time::Duration;

/// What happens to a subscriber whose queue is full because it reads slower than events arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Close the stream. The client's `EventSource` reconnects with its `Last-Event-ID` and, with
    /// replay on, gets every event it missed: lossless. The default when replay is on.
    Disconnect,
    /// Drop the events that do not fit and, once the queue has room again, send the
    /// `livepush.lagged` event with `{"missed": N}`. The default when replay is off.
    Notify,
}

/// Settings of a [`Hub`](crate::Hub), read-only: the one way to set them is the
/// [`HubBuilder`](crate::HubBuilder) (from code, or from the environment with
/// [`HubBuilder::from_env`](crate::HubBuilder::from_env)).
/// [`Hub::config`](crate::Hub::config) tells the settings in force.
///
/// The broker's settings (its URL, the Redis prefix) are not here: they belong to the broker,
/// and the builder hands them to it (`HubBuilder::redis`, `nats`, `redis_prefix`, `broker`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Interval of heartbeat comments on idle streams (`LIVEPUSH_HEARTBEAT_SECS`, default 15 s).
    pub(crate) heartbeat: Duration,
    /// Most concurrent SSE connections in this process (`LIVEPUSH_MAX_CONNECTIONS`, default 10,000).
    pub(crate) max_connections: usize,
    /// Events queued per connection before the slow-consumer policy applies
    /// (`LIVEPUSH_QUEUE_CAPACITY`, default 256).
    pub(crate) queue_capacity: usize,
    /// Largest event payload in bytes (`LIVEPUSH_MAX_EVENT_BYTES`, default 64 KiB).
    pub(crate) max_event_bytes: usize,
    /// The longest write-coalescing window (`LIVEPUSH_COALESCE_MS`, default 16 ms; zero turns
    /// coalescing off).
    ///
    /// A stream that writes its events one at a time keeps up and never waits. A stream that
    /// finds several events queued when it writes has fallen behind; it then waits a window after
    /// each write and sends everything queued by then in one write. The window starts at 1 ms,
    /// doubles with each further write of several events up to this value, and closes after a
    /// write of a single event. A queue that fills to its flush mark is written at once, so
    /// holding back never costs an event. Why: each write to a socket costs kernel time whatever
    /// it carries (figures in BENCHMARKS.md).
    pub(crate) coalesce: Duration,
    /// Events retained per topic for `Last-Event-ID` replay; 0 turns replay off
    /// (`LIVEPUSH_REPLAY`, default 0).
    pub(crate) replay: usize,
    /// How long retained events are kept (`LIVEPUSH_REPLAY_TTL_SECS`, default 3,600 s).
    pub(crate) replay_ttl: Duration,
    /// Most topics in one subscription (default 32).
    pub(crate) max_topics_per_subscription: usize,
    /// Most concurrent connections per cap key, shared by all instances (default: no cap).
    pub(crate) max_connections_per_key: Option<u32>,
    /// `Retry-After` sent with 429 answers, in whole seconds (default 5 s).
    pub(crate) retry_after: Duration,
    /// `retry:` hint sent to clients at connect, in whole milliseconds (default 2,000 ms).
    pub(crate) client_retry: Duration,
    /// Longest a publish may wait for the broker before it fails open (default 2 s).
    pub(crate) publish_timeout: Duration,
    /// What to do with a consumer that falls behind; `None` picks by replay (see
    /// [`SlowConsumerPolicy`]).
    pub(crate) slow_consumer: Option<SlowConsumerPolicy>,
    /// Most publications kept in the retry buffer while the broker cannot take them
    /// (`LIVEPUSH_RETRY_BUFFER_EVENTS`, default 10,000; 0 turns the buffer off, and a failed
    /// publish is then only an error).
    pub(crate) retry_buffer_events: usize,
    /// Most payload bytes kept in the retry buffer (`LIVEPUSH_RETRY_BUFFER_BYTES`, default 16 MiB).
    pub(crate) retry_buffer_bytes: usize,
    /// Longest a publication waits in the retry buffer before it is given up and its topic's
    /// subscribers are told to reset (`LIVEPUSH_RETRY_BUFFER_SECS`, default 30 s).
    pub(crate) retry_buffer_age: Duration,
    /// How long a member's leave waits after its last stream on a topic ended: a reconnect
    /// within it is no leave and no join (`LIVEPUSH_PRESENCE_GRACE_MS`, default 3,000 ms).
    pub(crate) presence_grace: Duration,
}

/// What each setting is; set them with the [`HubBuilder`](crate::HubBuilder) method of the same
/// name (or the one named in its doc).
impl Config {
    /// Interval of heartbeat comments on idle streams (`LIVEPUSH_HEARTBEAT_SECS`, default 15 s).
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// Most concurrent SSE connections in this process (`LIVEPUSH_MAX_CONNECTIONS`, default 10,000).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Events queued per connection before the slow-consumer policy applies
    /// (`LIVEPUSH_QUEUE_CAPACITY`, default 256).
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Largest event payload in bytes (`LIVEPUSH_MAX_EVENT_BYTES`, default 64 KiB).
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The longest write-coalescing window (`LIVEPUSH_COALESCE_MS`, default 16 ms; zero turns
    /// coalescing off).
    ///
    /// A stream that writes its events one at a time keeps up and never waits. A stream that
    /// finds several events queued when it writes has fallen behind; it then waits a window after
    /// each write and sends everything queued by then in one write. The window starts at 1 ms,
    /// doubles with each further write of several events up to this value, and closes after a
    /// write of a single event. A queue that fills to its flush mark is written at once, so
    /// holding back never costs an event. Why: each write to a socket costs kernel time whatever
    /// it carries (figures in BENCHMARKS.md).
    pub fn coalesce(&self) -> Duration {
        self.coalesce
    }

    /// Events retained per topic for `Last-Event-ID` replay; 0 turns replay off
    /// (`LIVEPUSH_REPLAY`, default 0).
    pub fn replay(&self) -> usize {
        self.replay
    }

    /// How long retained events are kept (`LIVEPUSH_REPLAY_TTL_SECS`, default 3,600 s).
    pub fn replay_ttl(&self) -> Duration {
        self.replay_ttl
    }

    /// Most topics in one subscription (default 32).
    pub fn max_topics_per_subscription(&self) -> usize {
        self.max_topics_per_subscription
    }

    /// Most concurrent connections per cap key, shared by all instances (default: no cap).
    pub fn max_connections_per_key(&self) -> Option<u32> {
        self.max_connections_per_key
    }

    /// `Retry-After` sent with 429 answers, in whole seconds (default 5 s).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// `retry:` hint sent to clients at connect, in whole milliseconds (default 2,000 ms).
    pub fn client_retry(&self) -> Duration {
        self.client_retry
    }

    /// Longest a publish may wait for the broker before it fails open (default 2 s).
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout
    }

    /// What to do with a consumer that falls behind; `None` picks by replay (see
    /// [`SlowConsumerPolicy`]).
    pub fn slow_consumer(&self) -> Option<SlowConsumerPolicy> {
        self.slow_consumer
    }

    /// Most publications kept in the retry buffer while the broker cannot take them
    /// (`LIVEPUSH_RETRY_BUFFER_EVENTS`, default 10,000; 0 turns the buffer off, and a failed
    /// publish is then only an error).
    pub fn retry_buffer_events(&self) -> usize {
        self.retry_buffer_events
    }

    /// Most payload bytes kept in the retry buffer (`LIVEPUSH_RETRY_BUFFER_BYTES`, default 16 MiB).
    pub fn retry_buffer_bytes(&self) -> usize {
        self.retry_buffer_bytes
    }

    /// Longest a publication waits in the retry buffer before it is given up and its topic's
    /// subscribers are told to reset (`LIVEPUSH_RETRY_BUFFER_SECS`, default 30 s).
    pub fn retry_buffer_age(&self) -> Duration {
        self.retry_buffer_age
    }

    /// How long a member's leave waits after its last stream on a topic ended: a reconnect
    /// within it is no leave and no join (`LIVEPUSH_PRESENCE_GRACE_MS`, default 3,000 ms; 0
    /// leaves at once). See `docs/presence.md`.
    pub fn presence_grace(&self) -> Duration {
        self.presence_grace
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(15),
            max_connections: 10_000,
            queue_capacity: 256,
            max_event_bytes: 64 * 1024,
            coalesce: Duration::from_millis(16),
            replay: 0,
            replay_ttl: Duration::from_secs(3600),
            max_topics_per_subscription: 32,
            max_connections_per_key: None,
            retry_after: Duration::from_secs(5),
            client_retry: Duration::from_millis(2000),
            publish_timeout: Duration::from_secs(2),
            slow_consumer: None,
            retry_buffer_events: 10_000,
            retry_buffer_bytes: 16 << 20,
            retry_buffer_age: Duration::from_secs(30),
            presence_grace: Duration::from_millis(3000),
        }
    }
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value of the wrong form.
    #[error("environment variable {var}={value:?} is invalid: {expected}")]
    InvalidVar {
        /// The variable's name.
        var: &'static str,
        /// What it held.
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid setting {setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// `REDIS_URL` is set but this build of livepush has no Redis support.
    #[error("REDIS_URL is set but livepush was built without the `redis` feature")]
    RedisFeatureOff,
    /// `NATS_URL` is set but this build of livepush has no NATS support.
    #[error("NATS_URL is set but livepush was built without the `nats` feature")]
    NatsFeatureOff,
    /// Both `NATS_URL` and `REDIS_URL` are set: one broker carries the events.
    #[error("NATS_URL and REDIS_URL are both set; set only the one of the broker to use")]
    TwoBrokers,
}

impl Config {
    /// Reads the hub's `LIVEPUSH_*` variables over the defaults. The broker's variables
    /// (`REDIS_URL`, `NATS_URL`, `LIVEPUSH_REDIS_PREFIX`) are read by
    /// [`HubBuilder::from_env`](crate::HubBuilder::from_env), which reads these too: start a
    /// hub from the environment with it, not with `HubBuilder::from_config(Config::from_env()?)`,
    /// which leaves the broker in memory.
    ///
    /// | setting | variable | unit | range | default |
    /// | --- | --- | --- | --- | --- |
    /// | `heartbeat` | `LIVEPUSH_HEARTBEAT_SECS` | s | more than 0, at most 3600 | 15 |
    /// | `max_connections` | `LIVEPUSH_MAX_CONNECTIONS` | connections | 1 to 4294967295 | 10000 |
    /// | `queue_capacity` | `LIVEPUSH_QUEUE_CAPACITY` | events | 1 to 1048576 | 256 |
    /// | `coalesce` | `LIVEPUSH_COALESCE_MS` | ms | 0 to 1000 | 16 |
    /// | `max_event_bytes` | `LIVEPUSH_MAX_EVENT_BYTES` | bytes | 16 to 67108864 | 65536 |
    /// | `replay` | `LIVEPUSH_REPLAY` | events per topic | 0 to 16777216 | 0 |
    /// | `replay_ttl` | `LIVEPUSH_REPLAY_TTL_SECS` | s | more than 0, at most 2592000 | 3600 |
    /// | `max_connections_per_key` | `LIVEPUSH_MAX_CONNECTIONS_PER_KEY` | connections | 1 to 4294967295 | unset |
    /// | `retry_buffer_events` | `LIVEPUSH_RETRY_BUFFER_EVENTS` | publications | 0 to 16777216 | 10000 |
    /// | `retry_buffer_bytes` | `LIVEPUSH_RETRY_BUFFER_BYTES` | bytes | 1024 to 1073741824 | 16777216 |
    /// | `retry_buffer_age` | `LIVEPUSH_RETRY_BUFFER_SECS` | s | more than 0, at most 3600 | 30 |
    /// | `max_topics_per_subscription` | none | topics | 1 to 18446744073709551615 | 32 |
    /// | `retry_after` | none | s | 0 to 86400 | 5 |
    /// | `client_retry` | none | ms | 0 to 86400000 | 2000 |
    /// | `publish_timeout` | none | ms | more than 0, at most 86400000 | 2000 |
    /// | `presence_grace` | `LIVEPUSH_PRESENCE_GRACE_MS` | ms | 0 to 60000 | 3000 |
    ///
    /// 0 turns coalescing, replay and the retry buffer off.
    ///
    /// In code, each setting is set with the [`HubBuilder`](crate::HubBuilder) method of its
    /// name, except `replay_ttl` (`replay(events, ttl)`), the three `retry_buffer_*`
    /// (`retry_buffer(events, bytes, max_age)`), and read with the `Config` method of its name.
    ///
    /// The builder ([`HubBuilder`](crate::HubBuilder)) and [`Config::validate`] hold settings
    /// made in code to the same ranges, so a value is accepted or refused alike wherever it comes
    /// from (code can also give a time setting a fraction of its unit). An empty variable counts
    /// as unset. A value of the wrong form is an error that names the variable, so a service can
    /// refuse to start with a clear message.
    ///
    /// ```
    /// let config = livepush::Config::from_env().expect("valid LIVEPUSH_* variables");
    /// assert!(config.queue_capacity() >= 1);
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` (for tests and other sources).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Config::default();
        read_vars(SETTINGS, &mut config, get)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every setting against its range (the table of [`Config::from_env`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_ranges(SETTINGS, self)
    }

    /// The slow-consumer policy in force: the configured one, or the default for the replay setting.
    pub fn slow_consumer_policy(&self) -> SlowConsumerPolicy {
        self.slow_consumer.unwrap_or(if self.replay > 0 {
            SlowConsumerPolicy::Disconnect
        } else {
            SlowConsumerPolicy::Notify
        })
    }
}

/// The unit a numeric setting is counted in: in its environment variable, and in the range of
/// its table ([`SETTINGS`], and the server's in `serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Seconds,
    Millis,
    /// A count of what it names (connections, events, bytes…).
    Count(&'static str),
}

/// A setting's value as checked: a count, or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    Count(u64),
    Time(Duration),
}

/// One numeric setting of a settings struct `C` (`Config`, the server's `ServeConfig`): its
/// field, environment variable, unit, range and how to read and write it. The one place each of
/// these is written.
pub(crate) struct Setting<C> {
    /// The field.
    pub(crate) name: &'static str,
    pub(crate) var: Option<&'static str>,
    pub(crate) unit: Unit,
    /// The least value, in `unit`; for a time, 1 means "more than zero" (code may give a
    /// fraction of the unit).
    pub(crate) min: u64,
    /// The greatest value, in `unit`.
    pub(crate) max: u64,
    /// The range in words, for error messages.
    pub(crate) expected: &'static str,
    pub(crate) get: fn(&C) -> Option<Value>,
    pub(crate) set: fn(&mut C, Value),
}

/// Sets every setting of `table` whose variable `get` finds (non-empty) in `config`; a value of
/// the wrong form or out of range is an error naming the variable.
pub(crate) fn read_vars<C>(
    table: &[Setting<C>],
    config: &mut C,
    get: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for setting in table {
        let Some(var) = setting.var else { continue };
        if let Some(text) = get(var) {
            let Some(value) = setting.parse(&text) else {
                return Err(ConfigError::InvalidVar {
                    var,
                    value: text,
                    expected: setting.expected,
                });
            };
            (setting.set)(config, value);
        }
    }
    Ok(())
}

/// Checks every setting of `config` against its range in `table`.
pub(crate) fn check_ranges<C>(table: &[Setting<C>], config: &C) -> Result<(), ConfigError> {
    for setting in table {
        if let Some(value) = (setting.get)(config) {
            if !setting.accepts(value) {
                return Err(ConfigError::Invalid {
                    setting: setting.name,
                    reason: setting.expected,
                });
            }
        }
    }
    Ok(())
}

impl<C> Setting<C> {
    /// Reads an environment value: a whole number of `unit` in range.
    fn parse(&self, text: &str) -> Option<Value> {
        let n: u64 = text.trim().parse().ok()?;
        let value = match self.unit {
            Unit::Seconds => Value::Time(Duration::from_secs(n)),
            Unit::Millis => Value::Time(Duration::from_millis(n)),
            Unit::Count(_) => Value::Count(n),
        };
        self.accepts(value).then_some(value)
    }

    fn accepts(&self, value: Value) -> bool {
        let unit = match self.unit {
            Unit::Seconds => Duration::from_secs(1),
            Unit::Millis => Duration::from_millis(1),
            Unit::Count(_) => {
                return matches!(value, Value::Count(n) if (self.min..=self.max).contains(&n))
            }
        };
        let Value::Time(t) = value else { return false };
        let least_ok = match self.min {
            0 => true,
            1 => !t.is_zero(),
            min => t >= unit * min as u32,
        };
        least_ok && t.as_nanos() <= unit.as_nanos() * u128::from(self.max)
    }
}

pub(crate) fn count(n: usize) -> Option<Value> {
    Some(Value::Count(n as u64))
}

pub(crate) fn as_count(value: Value) -> usize {
    match value {
        Value::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Value::Time(_) => unreachable!("a count setting is set from a count"),
    }
}

pub(crate) fn as_time(value: Value) -> Duration {
    match value {
        Value::Time(t) => t,
        Value::Count(_) => unreachable!("a time setting is set from a time"),
    }
}

/// Every numeric setting of the hub. The broker's (`REDIS_URL`, `NATS_URL`,
/// `LIVEPUSH_REDIS_PREFIX`) are text, read by `HubBuilder::from_lookup`.
const SETTINGS: &[Setting<Config>] = &[
    Setting {
        name: "heartbeat",
        var: Some("LIVEPUSH_HEARTBEAT_SECS"),
        unit: Unit::Seconds,
        min: 1,
        max: 3600,
        expected: "seconds, more than 0 and at most 3600",
        get: |c| Some(Value::Time(c.heartbeat)),
        set: |c, v| c.heartbeat = as_time(v),
    },
    Setting {
        name: "max_connections",
        var: Some("LIVEPUSH_MAX_CONNECTIONS"),
        unit: Unit::Count("connections"),
        min: 1,
        max: u32::MAX as u64,
        expected: "a whole number from 1 to 4294967295",
        get: |c| count(c.max_connections),
        set: |c, v| c.max_connections = as_count(v),
    },
    Setting {
        name: "queue_capacity",
        var: Some("LIVEPUSH_QUEUE_CAPACITY"),
        unit: Unit::Count("events"),
        min: 1,
        max: 1 << 20,
        expected: "a whole number from 1 to 1048576",
        get: |c| count(c.queue_capacity),
        set: |c, v| c.queue_capacity = as_count(v),
    },
    Setting {
        name: "coalesce",
        var: Some("LIVEPUSH_COALESCE_MS"),
        unit: Unit::Millis,
        min: 0,
        max: 1000,
        expected: "milliseconds from 0 (off) to 1000",
        get: |c| Some(Value::Time(c.coalesce)),
        set: |c, v| c.coalesce = as_time(v),
    },
    Setting {
        name: "max_event_bytes",
        var: Some("LIVEPUSH_MAX_EVENT_BYTES"),
        unit: Unit::Count("bytes"),
        min: 16,
        max: 64 << 20,
        expected: "bytes from 16 to 67108864",
        get: |c| count(c.max_event_bytes),
        set: |c, v| c.max_event_bytes = as_count(v),
    },
    Setting {
        name: "replay",
        var: Some("LIVEPUSH_REPLAY"),
        unit: Unit::Count("events per topic"),
        min: 0,
        max: 1 << 24,
        expected: "events per topic, 0 (off) to 16777216",
        get: |c| count(c.replay),
        set: |c, v| c.replay = as_count(v),
    },
    Setting {
        name: "replay_ttl",
        var: Some("LIVEPUSH_REPLAY_TTL_SECS"),
        unit: Unit::Seconds,
        min: 1,
        max: 30 * 86_400,
        expected: "seconds, more than 0 and at most 2592000",
        get: |c| Some(Value::Time(c.replay_ttl)),
        set: |c, v| c.replay_ttl = as_time(v),
    },
    Setting {
        name: "max_connections_per_key",
        var: Some("LIVEPUSH_MAX_CONNECTIONS_PER_KEY"),
        unit: Unit::Count("connections"),
        min: 1,
        max: u32::MAX as u64,
        expected: "a whole number from 1 to 4294967295",
        get: |c| c.max_connections_per_key.map(|n| Value::Count(n.into())),
        set: |c, v| c.max_connections_per_key = Some(as_count(v) as u32),
    },
    Setting {
        name: "retry_buffer_events",
        var: Some("LIVEPUSH_RETRY_BUFFER_EVENTS"),
        unit: Unit::Count("publications"),
        min: 0,
        max: 1 << 24,
        expected: "publications from 0 (off) to 16777216",
        get: |c| count(c.retry_buffer_events),
        set: |c, v| c.retry_buffer_events = as_count(v),
    },
    Setting {
        name: "retry_buffer_bytes",
        var: Some("LIVEPUSH_RETRY_BUFFER_BYTES"),
        unit: Unit::Count("bytes"),
        min: 1024,
        max: 1 << 30,
        expected: "bytes from 1024 to 1073741824",
        get: |c| count(c.retry_buffer_bytes),
        set: |c, v| c.retry_buffer_bytes = as_count(v),
    },
    Setting {
        name: "retry_buffer_age",
        var: Some("LIVEPUSH_RETRY_BUFFER_SECS"),
        unit: Unit::Seconds,
        min: 1,
        max: 3600,
        expected: "seconds, more than 0 and at most 3600",
        get: |c| Some(Value::Time(c.retry_buffer_age)),
        set: |c, v| c.retry_buffer_age = as_time(v),
    },
    Setting {
        name: "max_topics_per_subscription",
        var: None,
        unit: Unit::Count("topics"),
        min: 1,
        max: u64::MAX,
        expected: "at least 1",
        get: |c| count(c.max_topics_per_subscription),
        set: |c, v| c.max_topics_per_subscription = as_count(v),
    },
    Setting {
        name: "retry_after",
        var: None,
        unit: Unit::Seconds,
        min: 0,
        max: 86_400,
        expected: "at most 86400 s",
        get: |c| Some(Value::Time(c.retry_after)),
        set: |c, v| c.retry_after = as_time(v),
    },
    Setting {
        name: "client_retry",
        var: None,
        unit: Unit::Millis,
        min: 0,
        max: 86_400_000,
        expected: "at most 86400000 ms",
        get: |c| Some(Value::Time(c.client_retry)),
        set: |c, v| c.client_retry = as_time(v),
    },
    Setting {
        name: "publish_timeout",
        var: None,
        unit: Unit::Millis,
        min: 1,
        max: 86_400_000,
        expected: "more than 0 and at most 86400000 ms",
        get: |c| Some(Value::Time(c.publish_timeout)),
        set: |c, v| c.publish_timeout = as_time(v),
    },
    Setting {
        name: "presence_grace",
        var: Some("LIVEPUSH_PRESENCE_GRACE_MS"),
        unit: Unit::Millis,
        min: 0,
        max: 60_000,
        expected: "milliseconds from 0 (leave at once) to 60000",
        get: |c| Some(Value::Time(c.presence_grace)),
        set: |c, v| c.presence_grace = as_time(v),
    },
];

/// The doc table rows of a settings table (`Config::from_env`'s, `ServeConfig::from_env`'s),
/// rendered from the table and the defaults, for tests that compare them with the docs.
#[cfg(test)]
pub(crate) fn doc_rows<C>(table: &[Setting<C>], defaults: &C) -> Vec<String> {
    table
        .iter()
        .map(|s| {
            let var = s.var.map_or("none".to_owned(), |v| format!("`{v}`"));
            let (unit, per) = match s.unit {
                Unit::Seconds => ("s", Duration::from_secs(1)),
                Unit::Millis => ("ms", Duration::from_millis(1)),
                Unit::Count(what) => (what, Duration::ZERO),
            };
            let range = match (s.unit, s.min) {
                (Unit::Seconds | Unit::Millis, 1) => format!("more than 0, at most {}", s.max),
                _ => format!("{} to {}", s.min, s.max),
            };
            let default = match (s.get)(defaults) {
                None => "unset".to_owned(),
                Some(Value::Count(n)) => n.to_string(),
                Some(Value::Time(t)) => (t.as_nanos() / per.as_nanos()).to_string(),
            };
            format!(
                "    /// | `{}` | {var} | {unit} | {range} | {default} |",
                s.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_every_variable() {
        let c = from(&[
            ("LIVEPUSH_HEARTBEAT_SECS", "3"),
            ("LIVEPUSH_MAX_CONNECTIONS", "50"),
            ("LIVEPUSH_QUEUE_CAPACITY", "8"),
            ("LIVEPUSH_MAX_EVENT_BYTES", "1024"),
            ("LIVEPUSH_COALESCE_MS", "0"),
            ("LIVEPUSH_REPLAY", "100"),
            ("LIVEPUSH_REPLAY_TTL_SECS", "60"),
            ("LIVEPUSH_MAX_CONNECTIONS_PER_KEY", "2"),
            ("LIVEPUSH_RETRY_BUFFER_EVENTS", "5"),
            ("LIVEPUSH_RETRY_BUFFER_BYTES", "4096"),
            ("LIVEPUSH_RETRY_BUFFER_SECS", "7"),
        ])
        .unwrap();
        assert_eq!(c.retry_buffer_events, 5);
        assert_eq!(c.retry_buffer_bytes, 4096);
        assert_eq!(c.retry_buffer_age, Duration::from_secs(7));
        assert_eq!(c.heartbeat, Duration::from_secs(3));
        assert_eq!(c.max_connections, 50);
        assert_eq!(c.queue_capacity, 8);
        assert_eq!(c.max_event_bytes, 1024);
        assert_eq!(c.coalesce, Duration::ZERO);
        assert_eq!(c.replay, 100);
        assert_eq!(c.replay_ttl, Duration::from_secs(60));
        assert_eq!(c.max_connections_per_key, Some(2));
        assert_eq!(c.slow_consumer_policy(), SlowConsumerPolicy::Disconnect);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let c = from(&[("LIVEPUSH_REPLAY", "")]).unwrap();
        assert_eq!(c.replay, 0);
        assert_eq!(c.slow_consumer_policy(), SlowConsumerPolicy::Notify);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, value) in [
            ("LIVEPUSH_HEARTBEAT_SECS", "0"),
            ("LIVEPUSH_HEARTBEAT_SECS", "fast"),
            ("LIVEPUSH_MAX_CONNECTIONS", "-1"),
            ("LIVEPUSH_QUEUE_CAPACITY", "0"),
            ("LIVEPUSH_MAX_EVENT_BYTES", "1"),
            ("LIVEPUSH_COALESCE_MS", "1001"),
            ("LIVEPUSH_COALESCE_MS", "0.5"),
            ("LIVEPUSH_REPLAY", "lots"),
            ("LIVEPUSH_REPLAY_TTL_SECS", "0"),
            ("LIVEPUSH_RETRY_BUFFER_EVENTS", "many"),
            ("LIVEPUSH_RETRY_BUFFER_BYTES", "10"),
            ("LIVEPUSH_RETRY_BUFFER_SECS", "0"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn the_doc_table_lists_every_setting_as_the_table_holds_it() {
        let source = include_str!("config.rs");
        for row in doc_rows(SETTINGS, &Config::default()) {
            assert!(
                source.contains(&format!("{row}\n")),
                "missing or stale doc row:\n{row}"
            );
        }
    }

    #[test]
    fn the_environment_and_code_accept_and_refuse_the_same_values() {
        for s in SETTINGS {
            let Some(var) = s.var else { continue };
            let mut probes = vec![s.min, s.max, s.max.saturating_add(1)];
            if s.min > 0 {
                probes.push(s.min - 1);
            }
            for n in probes {
                let from_env = from(&[(var, &n.to_string())]);
                let parsed = match s.unit {
                    Unit::Seconds => Value::Time(Duration::from_secs(n)),
                    Unit::Millis => Value::Time(Duration::from_millis(n)),
                    Unit::Count(_) => Value::Count(n),
                };
                let mut in_code = Config::default();
                (s.set)(&mut in_code, parsed);
                assert_eq!(
                    from_env.is_ok(),
                    in_code.validate().is_ok(),
                    "{var}={n}: the environment and code disagree"
                );
            }
        }
    }

    #[test]
    fn a_two_hour_heartbeat_is_refused_from_code_as_from_the_environment() {
        assert!(from(&[("LIVEPUSH_HEARTBEAT_SECS", "7200")]).is_err());
        let config = Config {
            heartbeat: Duration::from_secs(7200),
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                setting: "heartbeat",
                ..
            })
        ));
        let config = Config {
            heartbeat: Duration::from_millis(200),
            ..Config::default()
        };
        assert!(
            config.validate().is_ok(),
            "code may give a fraction of a second"
        );
    }
}
