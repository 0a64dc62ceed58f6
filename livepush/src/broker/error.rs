//! What a broker reports when it cannot do what was asked.

use std::error::Error;
use std::fmt;

/// A broker could not do what was asked.
///
/// Each variant carries a [`Cause`]: the message (shown by `Display`, in logs and health
/// output, so it includes the text of the error behind it) and, where there is one, that error
/// itself (a `redis::RedisError`, a timeout), reachable through [`Error::source`] for code that
/// needs more than text.
#[derive(Debug)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker cannot be reached.
    Unavailable(Cause),
    /// The broker answered with something unexpected.
    Protocol(Cause),
    /// The broker's address cannot be used (an unparsable `REDIS_URL`, for example).
    InvalidAddress(Cause),
}

impl BrokerError {
    /// The message and source of the error.
    pub fn cause(&self) -> &Cause {
        match self {
            BrokerError::Unavailable(c)
            | BrokerError::Protocol(c)
            | BrokerError::InvalidAddress(c) => c,
        }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            BrokerError::Unavailable(_) => "broker unavailable",
            BrokerError::Protocol(_) => "broker protocol error",
            BrokerError::InvalidAddress(_) => "invalid broker address",
        };
        write!(f, "{what}: {}", self.cause())
    }
}

impl Error for BrokerError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause().source()
    }
}

/// The message of a [`BrokerError`], and the error that caused it when there is one.
#[derive(Debug)]
pub struct Cause {
    message: String,
    source: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl Cause {
    /// A cause with `message` and no error behind it.
    pub fn new(message: impl Into<String>) -> Self {
        Cause {
            message: message.into(),
            source: None,
        }
    }

    /// A cause that shows `source`'s text and keeps `source` for [`Error::source`].
    pub fn of(source: impl Error + Send + Sync + 'static) -> Self {
        Cause {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// A cause with `message` (which should say what `source` does not) and `source` behind it.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Error + Send + Sync + 'static,
    ) -> Self {
        Cause {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error behind this one, if any.
    pub fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause::new(message)
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause::new(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_message_and_keeps_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
        let error = BrokerError::Unavailable(Cause::of(io));
        assert_eq!(error.to_string(), "broker unavailable: no answer");
        let source = error.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        let plain = BrokerError::Protocol("odd reply".into());
        assert_eq!(plain.to_string(), "broker protocol error: odd reply");
        assert!(plain.source().is_none());
    }
}
