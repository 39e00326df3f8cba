//! Policy: where it is read from and how its sections come together into a snapshot.
//!
//! Text enters through [`source`] (watched by [`watch`], re-read by [`reload`]), is parsed into
//! a [`file::PolicyFile`] whose sections each domain compiles, and leaves [`compile`] as an
//! immutable [`snapshot::Snapshot`] or a list of [`Problem`]s. [`resolver`] keeps provider
//! addresses fresh for the snapshot in force.

pub mod compile;
mod env;
pub mod file;
#[cfg(test)]
mod golden;
pub mod reload;
pub mod resolver;
pub mod server;
pub mod snapshot;
pub mod source;
pub mod watch;

pub use crate::problem::Problem;
pub use compile::{compile, compile_parsed, Compiled, Environment};
pub use file::parse;
pub use snapshot::Snapshot;
