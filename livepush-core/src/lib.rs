//! The rules that both [livepush](https://docs.rs/livepush) and its macros apply, written once.
//!
//! The runtime checks topics and event names when a program publishes or subscribes; the macros
//! check the same names and topic templates when the program compiles. Both call this crate, so
//! what compiles is what the runtime accepts. It has no dependencies and no use on its own: use
//! the `livepush` crate.
//!
//! - [`topic`]: the topic charset and length.
//! - [`name`]: the event and category name rule.
//! - [`template`]: the topic template grammar (`{name}`, `{a.b}`, `{{`, `}}`).
#![deny(missing_docs)]

pub mod name;
pub mod template;
pub mod topic;
