//! Token exchange (RFC 8693): from a parent's credential, a delegated token for an actor — or
//! why not. Pure over what the caller resolved (the parent's scope by policy and by credential,
//! its expiry, its chain); signing is the only thing it does besides deciding.

use ed25519_dalek::SigningKey;

use super::delegation::{self, Actor, DelegatedClaims, Lineage, Scope, Settings};

/// `issued_token_type` of every token Warden issues.
pub const ISSUED_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The parent a token is exchanged from.
#[derive(Debug, Clone)]
pub struct Parent<'a> {
    pub agent: &'a str,
    /// What the agent's policy gives it.
    pub policy: Scope,
    /// What the parent's credential narrows that to (a JWT's `models`, a delegated token's
    /// scope); `None`: the credential does not narrow.
    pub credential: Option<Scope>,
    /// When the parent's credential expires (Unix seconds); `None`: it does not.
    pub expires: Option<i64>,
    /// The actor chain so far (a delegated parent's).
    pub actors: Vec<Box<str>>,
    /// Token ids up the chain, the parent's own included.
    pub ancestors: Vec<Box<str>>,
    /// The API key or public key id the chain started from.
    pub root_key: Option<Box<str>>,
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub actor: &'a str,
    /// `None`: the parent's whole scope.
    pub scope: Option<Scope>,
    /// `None`: `delegation.max_ttl`, or less if the parent expires sooner.
    pub ttl_secs: Option<i64>,
}

/// A delegated token, as answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub jti: String,
}

/// Why an exchange is refused: RFC 6749 §5.2's errors and Warden's `delegation_invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// 403: wider than the parent (scope, expiry, depth); the text says how.
    Delegation(String),
    /// 400 `invalid_request` (a parameter missing, repeated or malformed).
    InvalidRequest(String),
    /// 400 `invalid_scope`.
    InvalidScope(String),
    /// 400 `invalid_grant` (the subject token is not a usable credential).
    InvalidGrant(String),
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType(String),
}

/// Issues a token for `ask` under `parent`, or refuses it whole (nothing is narrowed silently).
pub fn exchange(
    key: &SigningKey,
    settings: Settings,
    parent: &Parent<'_>,
    ask: &Ask<'_>,
    now: i64,
) -> Result<Issued, Refused> {
    if !is_actor_name(ask.actor) {
        return Err(Refused::InvalidRequest(
            "`actor` is 1-64 characters of A-Z a-z 0-9 - _ . : @".into(),
        ));
    }
    let granted = parent.credential.as_ref().unwrap_or(&parent.policy);
    let scope = match &ask.scope {
        Some(scope) => {
            for within in [Some(&parent.policy), parent.credential.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Some(wider) = scope.wider_than(within) {
                    return Err(Refused::Delegation(format!(
                        "the requested scope is wider than the parent's: {wider} is not within it"
                    )));
                }
            }
            scope.clone()
        }
        None => granted.clone(),
    };
    let mut actors = parent.actors.clone();
    actors.push(ask.actor.into());
    if actors.len() > settings.max_depth {
        return Err(Refused::Delegation(format!(
            "the chain would be {} actors deep, over `delegation.max_depth` ({})",
            actors.len(),
            settings.max_depth
        )));
    }
    let exp = match ask.ttl_secs {
        Some(ttl) if ttl > settings.max_ttl_secs => {
            return Err(Refused::Delegation(format!(
                "`ttl` {ttl} s is over `delegation.max_ttl` ({} s)",
                settings.max_ttl_secs
            )))
        }
        Some(ttl) if parent.expires.is_some_and(|e| now + ttl > e) => {
            return Err(Refused::Delegation(
                "the token would expire after its parent credential".into(),
            ))
        }
        Some(ttl) => now + ttl,
        None => parent.expires.map_or(now + settings.max_ttl_secs, |e| {
            e.min(now + settings.max_ttl_secs)
        }),
    };
    if exp <= now {
        return Err(Refused::InvalidGrant(
            "the parent credential has expired".into(),
        ));
    }
    let jti = uuid::Uuid::new_v4().to_string();
    let act = Actor::nest(&actors).ok_or_else(|| Refused::InvalidRequest("no actor".into()))?;
    let claims = DelegatedClaims {
        iss: delegation::ISSUER,
        aud: delegation::ISSUER,
        sub: parent.agent,
        iat: now,
        exp,
        jti: jti.clone(),
        act,
        scope: scope.render(),
        warden: Lineage {
            ancestors: parent.ancestors.iter().map(|a| a.to_string()).collect(),
            key: parent.root_key.as_deref().map(str::to_owned),
        },
    };
    let access_token = delegation::sign(key, &claims)
        .map_err(|e| Refused::InvalidRequest(format!("cannot sign the token: {e}")))?;
    Ok(Issued {
        access_token,
        expires_in: exp - now,
        jti,
    })
}

/// An actor's name: what an agent id may be, plus `:` and `@` (`crew:researcher`).
fn is_actor_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn parent() -> Parent<'static> {
        Parent {
            agent: "planner",
            policy: Scope::parse("models:gpt-* mcp:crm/lookup_* services:stripe").unwrap(),
            credential: None,
            expires: Some(NOW + 600),
            actors: Vec::new(),
            ancestors: vec!["root-jti".into()],
            root_key: Some("planner-key".into()),
        }
    }

    fn ask(scope: Option<&str>, ttl: Option<i64>) -> Ask<'static> {
        Ask {
            actor: "researcher",
            scope: scope.map(|s| Scope::parse(s).unwrap()),
            ttl_secs: ttl,
        }
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn a_narrower_token_is_issued_and_verifies_as_delegated() {
        let issued = exchange(
            &key(),
            Settings::default(),
            &parent(),
            &ask(Some("models:gpt-4o"), Some(60)),
            NOW,
        )
        .unwrap();
        assert_eq!(issued.expires_in, 60);
        let issuers = super::super::jwt::Issuers::new(vec![super::super::jwt::Issuer::delegating(
            key().verifying_key().as_bytes(),
        )]);
        let verified = issuers
            .verify(issued.access_token.as_bytes(), NOW + 1)
            .unwrap();
        let delegation = verified.delegation.as_ref().unwrap();
        assert_eq!(&*verified.subject, "planner");
        assert_eq!(delegation.actors, vec![Box::from("researcher")]);
        assert!(verified.models.as_ref().unwrap().matches("gpt-4o"));
        assert!(!verified.models.as_ref().unwrap().matches("gpt-4o-mini"));
        assert_eq!(delegation.ancestors, vec![Box::from("root-jti")]);
        assert_eq!(delegation.root_key.as_deref(), Some("planner-key"));
    }

    #[test]
    fn anything_wider_than_the_parent_is_refused_not_narrowed() {
        let refused = |a: Ask<'_>, p: &Parent<'_>| {
            exchange(&key(), Settings::default(), p, &a, NOW).unwrap_err()
        };
        assert!(matches!(
            refused(ask(Some("models:*"), None), &parent()),
            Refused::Delegation(_)
        ));
        assert!(matches!(
            refused(ask(Some("services:mailgun"), None), &parent()),
            Refused::Delegation(_)
        ));
        assert!(matches!(
            refused(ask(None, Some(3601)), &parent()),
            Refused::Delegation(_)
        ));
        assert!(
            matches!(
                refused(ask(None, Some(601)), &parent()),
                Refused::Delegation(_)
            ),
            "after the parent"
        );
        let narrowed = Parent {
            credential: Some(Scope::parse("models:gpt-4o").unwrap()),
            ..parent()
        };
        assert!(matches!(
            refused(ask(Some("models:gpt-4o-mini"), None), &narrowed),
            Refused::Delegation(_)
        ));
        let deep = Parent {
            actors: vec!["a".into(), "b".into(), "c".into()],
            ..parent()
        };
        assert!(
            matches!(refused(ask(None, None), &deep), Refused::Delegation(m) if m.contains("4 actors"))
        );
        assert!(matches!(
            refused(
                Ask {
                    actor: "bad actor",
                    ..ask(None, None)
                },
                &parent()
            ),
            Refused::InvalidRequest(_)
        ));
        let fitted = exchange(
            &key(),
            Settings::default(),
            &parent(),
            &ask(None, None),
            NOW,
        )
        .unwrap();
        assert_eq!(
            fitted.expires_in, 600,
            "without a ttl, the token ends with its parent"
        );
    }
}
