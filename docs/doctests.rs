//! The Rust snippets of README.md and of the guides in this folder, compiled (and run unless
//! `no_run`) as doc tests of the unpublished `livepush-suite` package: `cargo test --workspace`
//! (or `cargo test -p livepush-suite --doc`) runs them against `livepush` with every feature.
//!
//! They are here and not in `livepush/src/lib.rs` because a published crate can read only the
//! files inside its own folder; `include_str!` of a file outside `livepush/` breaks the doc tests
//! of the crate users download. Add a guide as one more item below.

/// Every Rust snippet of README.md.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;

/// The Rust snippets of `docs/brokers.md`.
#[cfg(doctest)]
#[doc = include_str!("brokers.md")]
pub struct Brokers;

/// The Rust snippets of `docs/clients.md`.
#[cfg(doctest)]
#[doc = include_str!("clients.md")]
pub struct Clients;

/// The Rust snippets of `docs/configuration.md`.
#[cfg(doctest)]
#[doc = include_str!("configuration.md")]
pub struct Configuration;

/// The Rust snippets of `docs/deployment.md`.
#[cfg(doctest)]
#[doc = include_str!("deployment.md")]
pub struct Deployment;

/// The Rust snippets of `docs/how-it-works.md`.
#[cfg(doctest)]
#[doc = include_str!("how-it-works.md")]
pub struct HowItWorks;

/// The Rust snippets of `docs/presence.md`.
#[cfg(doctest)]
#[doc = include_str!("presence.md")]
pub struct Presence;

/// The Rust snippets of `docs/limits.md`.
#[cfg(doctest)]
#[doc = include_str!("limits.md")]
pub struct Limits;

/// The Rust snippets of `docs/macros.md`.
#[cfg(doctest)]
#[doc = include_str!("macros.md")]
pub struct Macros;

/// The Rust snippets of `docs/multi-instance.md`.
#[cfg(doctest)]
#[doc = include_str!("multi-instance.md")]
pub struct MultiInstance;

/// The Rust snippets of `docs/nats.md`.
#[cfg(doctest)]
#[doc = include_str!("nats.md")]
pub struct Nats;

/// The Rust snippets of `docs/outbox.md`.
#[cfg(doctest)]
#[doc = include_str!("outbox.md")]
pub struct Outbox;

/// The Rust snippets of `docs/replay-and-guarantees.md`.
#[cfg(doctest)]
#[doc = include_str!("replay-and-guarantees.md")]
pub struct ReplayAndGuarantees;

/// The Rust snippets of `docs/testing.md` (they need the `testing` feature, which the suite's
/// dev-dependency on `livepush` turns on).
#[cfg(doctest)]
#[doc = include_str!("testing.md")]
pub struct Testing;

/// The Rust snippets of `docs/topics-and-authorization.md`.
#[cfg(doctest)]
#[doc = include_str!("topics-and-authorization.md")]
pub struct TopicsAndAuthorization;

/// The Rust snippets of `docs/troubleshooting.md`.
#[cfg(doctest)]
#[doc = include_str!("troubleshooting.md")]
pub struct Troubleshooting;

/// The Rust snippets of `docs/observability.md`.
#[cfg(doctest)]
#[doc = include_str!("observability.md")]
pub struct Observability;

/// The Rust snippets of `docs/state.md`.
#[cfg(doctest)]
#[doc = include_str!("state.md")]
pub struct State;
