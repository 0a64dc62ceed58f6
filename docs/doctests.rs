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
