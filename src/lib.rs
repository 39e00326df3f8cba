//! Warden: a sidecar reverse proxy that gives every AI agent an identity and enforces policy on
//! its LLM traffic. `docs/architecture.md` describes the layers and one request top to bottom;
//! `main.rs` only parses the command line.
//!
//! Modules, lowest layer first; a module imports only modules of lower layers:
//! 1. foundations: [`problem`], [`globs`], [`environment`], [`clock`], [`code`], [`json`], [`sse`], [`mock`];
//! 2. domains: [`fleet`], [`objects`] (who created each provider object), [`limits`], [`identity`], [`providers`], [`mcp`] (what agents may do on MCP servers), [`policy`]; then [`metrics`] (reads
//!    the limits' live counters), [`audit`] (counts through metrics) and [`telemetry`] (traces, OTLP export);
//! 3. [`config`]: reads policy sources and assembles the domains' sections into a snapshot;
//! 4. [`proxy`] and [`admin`]: the request path and the admin port; [`k8s`]: sidecar injection; [`tunnel`]: CONNECT (HTTPS_PROXY mode);
//! 5. [`cli`]: one file per subcommand.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod code;
pub mod config;
pub mod environment;
pub mod fleet;
pub mod globs;
pub mod identity;
pub mod json;
pub mod k8s;
pub mod limits;
pub mod mcp;
pub mod metrics;
pub mod mock;
pub mod objects;
pub mod policy;
pub mod problem;
pub mod providers;
pub mod proxy;
pub mod sse;
pub mod telemetry;
pub mod translate;
pub mod tunnel;
