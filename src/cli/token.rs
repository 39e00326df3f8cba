//! `warden token mint`: an EdDSA JWT for an agent, signed with an issuer's key (tests, scripts,
//! and issuers that are not an identity provider).

use std::path::Path;
use std::process::ExitCode;

use jiff::{SignedDuration, Timestamp};

use crate::audit::keys::read_signing_key;
use crate::identity::jwt::{mint as sign, NewToken};

/// What `warden token mint` was asked for.
pub struct Mint<'a> {
    pub issuer_key: &'a Path,
    pub agent: &'a str,
    pub audience: &'a str,
    pub ttl: &'a str,
    pub issuer: Option<&'a str>,
    pub models: &'a [String],
    pub jti: Option<&'a str>,
}

/// Prints the token on stdout; exit 0, or 2 with the reason on stderr.
pub fn mint(args: &Mint<'_>) -> ExitCode {
    match build(args) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(2)
        }
    }
}

fn build(args: &Mint<'_>) -> Result<String, String> {
    let key = read_signing_key(args.issuer_key)?;
    let ttl: SignedDuration = args
        .ttl
        .parse()
        .map_err(|_| format!("--ttl `{}` is not a duration like 5m, 300s or 1h", args.ttl))?;
    if ttl.is_negative() || ttl.is_zero() {
        return Err("--ttl must be positive".into());
    }
    let now = Timestamp::now().as_second();
    let token = NewToken {
        sub: args.agent.to_string(),
        aud: args.audience.to_string(),
        iss: args.issuer.map(str::to_string),
        iat: now,
        exp: now.saturating_add(ttl.as_secs()),
        jti: Some(
            args.jti
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string),
        ),
        models: (!args.models.is_empty()).then(|| args.models.to_vec()),
    };
    sign(&key, &token)
}
