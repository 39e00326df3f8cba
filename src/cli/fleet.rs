//! `warden revoke`, `warden suspend`, `warden reinstate`: push a change to every Warden of the
//! fleet through the policy's `fleet.redis` (live within a second, kept across restarts).

use std::path::PathBuf;
use std::process::ExitCode;

use jiff::Timestamp;

use crate::config::Snapshot;
use crate::fleet::command::{apply, Change};
use crate::fleet::pushed::{Entry, Kind};
use crate::fleet::redis::{client, connect, TIMEOUT};
use crate::policy::revocations::RevokedKind;

/// Which id a command is about: exactly one of them (clap enforces it).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// An agent id
    #[arg(long)]
    pub agent: Option<String>,
    /// An API key id or public key id
    #[arg(long)]
    pub key: Option<String>,
    /// A JWT id (`jti`)
    #[arg(long)]
    pub token: Option<String>,
    /// A team (agents' `owner`): every agent of it
    #[arg(long)]
    pub team: Option<String>,
}

impl Target {
    fn kind_and_id(&self) -> (Kind, &str, RevokedKind) {
        match (&self.agent, &self.key, &self.token, &self.team) {
            (Some(agent), ..) => (Kind::Agent, agent, RevokedKind::Agent),
            (_, Some(key), ..) => (Kind::Key, key, RevokedKind::Credential),
            (_, _, Some(token), _) => (Kind::Token, token, RevokedKind::Token),
            (.., Some(team)) => (Kind::Team, team, RevokedKind::Team),
            (None, None, None, None) => (Kind::Agent, "", RevokedKind::Agent),
        }
    }
}

/// `warden revoke`: refuses the agent, key or token on every Warden until reinstated.
pub fn revoke(config: Option<PathBuf>, target: &Target, reason: Option<String>) -> ExitCode {
    let (kind, id, _) = target.kind_and_id();
    let entry = Entry {
        reason: reason.unwrap_or_default(),
        at: Timestamp::now().as_second(),
        until: None,
    };
    let change = Change::Add {
        kind,
        id: id.to_string(),
        entry,
    };
    push(config, &change, |_, _| {
        format!("revoked {} `{id}` across the fleet", noun(kind))
    })
}

/// `warden suspend --agent ID --for 1h`: refuses the agent until the time is up.
pub fn suspend(
    config: Option<PathBuf>,
    agent: &str,
    duration: &str,
    reason: Option<String>,
) -> ExitCode {
    let length = duration
        .parse::<jiff::Span>()
        .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()));
    let length = match length {
        Ok(length) if length.is_positive() => length,
        _ => {
            eprintln!("warden: --for `{duration}` is not a positive duration like 30m, 1h or 2d");
            return ExitCode::from(1);
        }
    };
    let now = Timestamp::now().as_second();
    let until = now.saturating_add(length.as_secs());
    let change = Change::Add {
        kind: Kind::Suspend,
        id: agent.to_string(),
        entry: Entry {
            reason: reason.unwrap_or_default(),
            at: now,
            until: Some(until),
        },
    };
    let when = Timestamp::from_second(until).map_or_else(|_| until.to_string(), |t| t.to_string());
    push(config, &change, |_, _| {
        format!("suspended agent `{agent}` across the fleet until {when}")
    })
}

/// `warden reinstate`: lifts what was pushed for the agent (revocation and suspension), key or
/// token. What the policy itself revokes stays revoked: either source revokes.
pub fn reinstate(config: Option<PathBuf>, target: &Target) -> ExitCode {
    let (kind, id, policy_kind) = target.kind_and_id();
    let change = Change::Lift {
        kind,
        id: id.to_string(),
    };
    push(config, &change, |snapshot, removed| {
        let mut said = if removed > 0 {
            format!("reinstated {} `{id}` across the fleet", noun(kind))
        } else {
            format!(
                "{} `{id}` had nothing pushed against it; nothing to reinstate",
                noun(kind)
            )
        };
        if snapshot.revocations.get(policy_kind, id).is_some() {
            said.push_str(
                " (note: the policy's `revocations:` still revokes it; remove it there too)",
            );
        }
        said
    })
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Agent | Kind::Suspend => "agent",
        Kind::Key => "key",
        Kind::Token => "token",
        Kind::Team => "team",
    }
}

/// Reads the policy for its `fleet:`, applies `change` in Redis, and prints what `said` says.
fn push(
    config: Option<PathBuf>,
    change: &Change,
    said: impl FnOnce(&Snapshot, u64) -> String,
) -> ExitCode {
    match try_push(config, change) {
        Ok((snapshot, changed)) => {
            println!("{}", said(&snapshot, changed));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(1)
        }
    }
}

fn try_push(config: Option<PathBuf>, change: &Change) -> Result<(Snapshot, u64), String> {
    let path = super::config_path(config);
    let snapshot = super::offline_snapshot(&path)?;
    let settings = snapshot.fleet.clone().ok_or_else(|| {
        format!(
            "the policy at {} has no `fleet:` (a Redis the fleet shares); without one, revoke in the policy's `revocations:`",
            path.display()
        )
    })?;
    let redis = client(&settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let changed = runtime.block_on(async {
        let mut con = tokio::time::timeout(TIMEOUT, connect(&redis))
            .await
            .map_err(|_| "Redis did not answer in time".to_string())??;
        apply(&mut con, change).await
    })?;
    Ok((snapshot, changed))
}
