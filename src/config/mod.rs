//! Policy: where it is read from, what its files look like, how they compile into a snapshot.
//!
//! Text enters through [`source`], is parsed into the [`file`] types, and leaves [`compile`] as
//! an immutable [`snapshot::Snapshot`] or a list of [`problem::Problem`]s.

pub mod compile;
pub mod file;
pub mod problem;
pub mod reload;
pub mod resolve;
pub mod snapshot;
pub mod source;
pub mod trust;
pub mod watch;

pub use compile::{compile, compile_parsed, parse, Compiled, Environment};
pub use problem::Problem;
pub use snapshot::Snapshot;
