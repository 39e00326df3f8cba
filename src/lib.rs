//! Warden: a sidecar reverse proxy that gives every AI agent an identity and enforces policy on
//! its LLM traffic. See DESIGN.md for the architecture; `main.rs` only parses the command line.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod identity;
pub mod limits;
pub mod mock;
pub mod policy;
pub mod proxy;
