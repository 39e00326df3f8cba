//! `warden inject -f FILE|-`: adds the Warden sidecar to the workloads of a manifest and writes
//! the result to stdout (like `istioctl kube-inject`). Exit 0 done, 1 unreadable input.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::k8s::manifest;
use crate::k8s::sidecar::Sidecar;

/// What the injected sidecar is made of (shared by `inject` and `webhook`).
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// Warden's image [default: ghcr.io/warden-dev/warden:<this version>]
    #[arg(long)]
    pub image: Option<String>,
    /// ConfigMap holding the policy files
    #[arg(long, default_value = "warden-policy")]
    pub config_map: String,
    /// Secret whose keys become the sidecar's environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, …)
    #[arg(long, default_value = "warden-provider-keys")]
    pub provider_secret: String,
    /// Secret holding the audit signing key (`audit.key`); "" mounts none
    #[arg(long, default_value = "warden-audit-key")]
    pub audit_key_secret: String,
    /// Proxy port the policy listens on (127.0.0.1): where the app's base URLs point
    #[arg(long, default_value_t = 4000)]
    pub proxy_port: u16,
    /// Admin port the policy listens on (probes, metrics)
    #[arg(long, default_value_t = 9464)]
    pub admin_port: u16,
}

impl SidecarArgs {
    /// The sidecar these flags describe.
    pub fn sidecar(&self) -> Sidecar {
        let defaults = Sidecar::default();
        Sidecar {
            image: self.image.clone().unwrap_or(defaults.image),
            config_map: self.config_map.clone(),
            provider_secret: self.provider_secret.clone(),
            audit_key_secret: (!self.audit_key_secret.is_empty())
                .then(|| self.audit_key_secret.clone()),
            proxy_port: self.proxy_port,
            admin_port: self.admin_port,
        }
    }
}

/// Reads `file` (`-`: stdin), injects, writes the manifest to stdout.
pub fn run(file: &Path, sidecar: &SidecarArgs) -> ExitCode {
    let mut text = String::new();
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    if let Err(e) = read {
        eprintln!("warden inject: cannot read {}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    match manifest::inject(&text, &sidecar.sidecar()) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(out.text.as_bytes()) {
                eprintln!("warden inject: cannot write the manifest: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden inject: {}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}
