//! MCP sessions (the handshake revisions' `Mcp-Session-Id`), each bound to the agent that
//! opened it: a session id is a bearer of the server's state, so an agent presenting another
//! agent's is refused as if the session did not exist.
//!
//! Live state, kept across policy reloads, bounded: the oldest-used bindings are forgotten
//! first, and a forgotten session is refused like an unknown one (its client opens a new
//! one, as Streamable HTTP clients do on 404). Per Warden: a sidecar sees its own pod's
//! sessions.

use quick_cache::sync::Cache;

/// Most sessions remembered at once.
pub const CAPACITY: usize = 100_000;

/// Which agent opened each session, by server and session id.
pub struct Sessions {
    bound: Cache<(Box<str>, Box<str>), Box<str>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            bound: Cache::new(CAPACITY),
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sessions({} bound)", self.bound.len())
    }
}

impl Sessions {
    /// Binds `session` on `server` to `agent`, unless another agent holds it already (a server
    /// that hands out one id twice must not let the second agent in).
    pub fn bind(&self, server: &str, session: &str, agent: &str) -> bool {
        let key = (Box::from(server), Box::from(session));
        match self.bound.get(&key) {
            Some(holder) => &*holder == agent,
            None => {
                self.bound.insert(key, Box::from(agent));
                true
            }
        }
    }

    /// Whether `session` on `server` was opened by `agent`.
    pub fn is_held_by(&self, server: &str, session: &str, agent: &str) -> bool {
        let key = (Box::from(server), Box::from(session));
        self.bound.get(&key).is_some_and(|holder| &*holder == agent)
    }

    /// Forgets `session` on `server` (the agent ended it).
    pub fn end(&self, server: &str, session: &str) {
        self.bound.remove(&(Box::from(server), Box::from(session)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_belongs_to_the_agent_that_opened_it() {
        let sessions = Sessions::default();
        assert!(sessions.bind("crm", "s1", "a"));
        assert!(sessions.is_held_by("crm", "s1", "a"));
        assert!(!sessions.is_held_by("crm", "s1", "b"));
        assert!(!sessions.is_held_by("billing", "s1", "a"));
        assert!(!sessions.bind("crm", "s1", "b"));
        sessions.end("crm", "s1");
        assert!(!sessions.is_held_by("crm", "s1", "a"));
    }
}
