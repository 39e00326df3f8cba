//! The command line: one file per subcommand.

pub mod audit;
pub mod ca;
pub mod check;
pub mod demo;
pub mod fleet;
pub mod inject;
pub mod keygen;
pub mod keys;
pub mod logging;
pub mod schema;
pub mod serve;
pub mod token;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Warden: identity and policy for AI agents' LLM traffic, as a sidecar proxy.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar proxy on a policy file or directory.
    Serve {
        /// Policy file or directory of *.yaml files [default: $WARDEN_CONFIG, else config/warden.yaml]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Notice policy changes by polling only (every 500 ms), without file-system events
        #[arg(long)]
        no_watch: bool,
    },
    /// Validate policy files as `serve` would load them; prints file:line:col: message.
    Check {
        /// Policy files or directories
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run Warden with a built-in example policy and mock provider; prints commands to try.
    Demo {
        /// Proxy address
        #[arg(long, default_value = "127.0.0.1:4000")]
        listen: String,
        /// Admin (metrics, health) address
        #[arg(long, default_value = "127.0.0.1:9464")]
        admin: String,
    },
    /// Manage agent API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Make an Ed25519 key pair (token issuer, agent, or audit signer).
    Keygen {
        /// Where to write the private key (PKCS#8 PEM, mode 0600); the public key goes to OUT.pub
        #[arg(long)]
        out: PathBuf,
    },
    /// Agent tokens (EdDSA JWTs).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the policy format's JSON Schema (for editors and CI validation).
    Schema,
    /// Add the Warden sidecar to the workloads of a Kubernetes manifest; writes it to stdout.
    Inject {
        /// Manifest file, or - for stdin
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        sidecar: inject::SidecarArgs,
    },
    /// Revoke an agent, key or token on every Warden of the fleet (`fleet:` in policy), live
    /// within a second and until reinstated.
    Revoke {
        /// Policy file or directory [default: $WARDEN_CONFIG, else config/warden.yaml]
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        target: fleet::Target,
        /// Why (recorded with the revocation and in audit events)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Suspend an agent on every Warden of the fleet for a while.
    Suspend {
        /// Policy file or directory [default: $WARDEN_CONFIG, else config/warden.yaml]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The agent id
        #[arg(long)]
        agent: String,
        /// How long, like 30m, 1h or 2d
        #[arg(long = "for")]
        duration: String,
        /// Why (recorded with the suspension and in audit events)
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift what `revoke` or `suspend` pushed for an agent, key or token.
    Reinstate {
        /// Policy file or directory [default: $WARDEN_CONFIG, else config/warden.yaml]
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        target: fleet::Target,
    },
    /// The HTTPS_PROXY interception CA: make one, or bundle it with the system's roots.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Serve the sidecar injection as a mutating admission webhook (TLS).
    Webhook {
        /// Address to serve on
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: String,
        /// Certificate chain (PEM); read again when it changes
        #[arg(long, default_value = "/etc/warden-webhook/tls/tls.crt")]
        tls_cert: PathBuf,
        /// Private key (PEM); read again when it changes
        #[arg(long, default_value = "/etc/warden-webhook/tls/tls.key")]
        tls_key: PathBuf,
        #[command(flatten)]
        sidecar: inject::SidecarArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make an interception CA: a self-signed ECDSA P-256 certificate and its PKCS#8 key.
    New {
        /// Where to write the certificate (PEM)
        #[arg(long, default_value = "ca.pem")]
        cert: PathBuf,
        /// Where to write the private key (PKCS#8 PEM, mode 0600, never over an existing file)
        #[arg(long, default_value = "ca.key")]
        key: PathBuf,
        /// How long the CA is valid, in days
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Write the system's root certificates plus Warden's CA as one PEM bundle, for clients
    /// that trust one file (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) and still call other hosts.
    Bundle {
        /// The CA certificate [default: the policy's `server.intercept_ca_cert_file`]
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Policy file or directory [default: $WARDEN_CONFIG, else config/warden.yaml]
        #[arg(long, short, conflicts_with = "cert")]
        config: Option<PathBuf>,
        /// Where to write the bundle [default: stdout]
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an audit log: hash chain, sequence gaps, checkpoint signatures.
    Verify {
        /// Public key of the audit signer: base64 of the raw 32 bytes, or a file holding it
        #[arg(long)]
        key: Option<String>,
        /// Log files in chain order, or directories (rotated files oldest first)
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a JWT for an agent, signed with an issuer's key (verifies with PyJWT and Warden).
    Mint {
        /// The issuer's private key (PKCS#8 PEM, e.g. from `warden keygen`)
        #[arg(long)]
        issuer_key: PathBuf,
        /// Agent id (`sub`)
        #[arg(long)]
        agent: String,
        /// Audience (`aud`): the issuer's `audience` in Warden's policy
        #[arg(long)]
        audience: String,
        /// Lifetime, like 5m, 300s or 1h
        #[arg(long, default_value = "5m")]
        ttl: String,
        /// Issuer name (`iss`): the key under `issuers:` in policy [default: none; Warden then
        /// finds the issuer whose key verifies]
        #[arg(long)]
        issuer: Option<String>,
        /// Models the token narrows the agent to (comma-separated globs)
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Token id (`jti`), for revocation [default: a random UUID]
        #[arg(long)]
        jti: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new API key for an agent: prints the secret once and the policy YAML to paste.
    New {
        /// Agent id the key is for
        #[arg(long)]
        agent: String,
    },
}

/// The policy path a command reads: `--config`, else `$WARDEN_CONFIG`, else the default.
pub fn config_path(config: Option<PathBuf>) -> PathBuf {
    config
        .or_else(|| std::env::var_os("WARDEN_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(serve::DEFAULT_CONFIG))
}

/// The policy at `path` compiled as `serve` would, without reaching the network (for commands
/// that only read it).
pub fn offline_snapshot(path: &Path) -> Result<crate::config::Snapshot, String> {
    let sources = crate::config::source::read(path).map_err(|p| p.to_string())?;
    let live = crate::limits::LiveState::default();
    crate::config::compile(&sources, &crate::config::Environment::offline(&live))
        .map(|compiled| compiled.snapshot)
        .map_err(|problems| {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            format!("the policy is invalid:\n{}", listed.join("\n"))
        })
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    logging::init();
    match cli.command {
        Command::Serve { config, no_watch } => serve::run(config, !no_watch),
        Command::Check { paths } => check::run(&paths),
        Command::Demo { listen, admin } => demo::run(&listen, &admin),
        Command::Keys {
            command: KeysCommand::New { agent },
        } => keys::new(&agent),
        Command::Keygen { out } => keygen::run(&out),
        Command::Audit {
            command: AuditCommand::Verify { key, files },
        } => audit::verify(key.as_deref(), &files),
        Command::Schema => schema::run(),
        Command::Revoke {
            config,
            target,
            reason,
        } => fleet::revoke(config, &target, reason),
        Command::Suspend {
            config,
            agent,
            duration,
            reason,
        } => fleet::suspend(config, &agent, &duration, reason),
        Command::Reinstate { config, target } => fleet::reinstate(config, &target),
        Command::Inject { file, sidecar } => inject::run(&file, &sidecar),
        Command::Ca {
            command: CaCommand::New { cert, key, days },
        } => ca::new(&cert, &key, days),
        Command::Ca {
            command: CaCommand::Bundle { cert, config, out },
        } => ca::bundle(cert, config, out.as_deref()),
        Command::Webhook {
            listen,
            tls_cert,
            tls_key,
            sidecar,
        } => webhook::run(&listen, tls_cert, tls_key, &sidecar),
        Command::Token {
            command:
                TokenCommand::Mint {
                    issuer_key,
                    agent,
                    audience,
                    ttl,
                    issuer,
                    models,
                    jti,
                },
        } => token::mint(&token::Mint {
            issuer_key: &issuer_key,
            agent: &agent,
            audience: &audience,
            ttl: &ttl,
            issuer: issuer.as_deref(),
            models: &models,
            jti: jti.as_deref(),
        }),
    }
}
