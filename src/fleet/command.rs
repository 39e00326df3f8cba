//! Changes to the pushed revocation list (`warden revoke`, `suspend`, `reinstate`): written to
//! Redis and announced in one transaction, so a Warden that reads the list after the
//! announcement always finds the change.

use redis::aio::MultiplexedConnection;

use super::pushed::{self, Entry, Kind};
use super::redis::describe;

/// One change to the pushed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds an agent, key or token revocation, or an agent suspension (with its `until`).
    Add {
        kind: Kind,
        id: String,
        entry: Entry,
    },
    /// Lifts what the list holds for an id: for an agent both its revocation and its
    /// suspension.
    Lift { kind: Kind, id: String },
}

/// Applies `change`; returns how many entries it added or removed.
pub async fn apply(con: &mut MultiplexedConnection, change: &Change) -> Result<u64, String> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    match change {
        Change::Add { kind, id, entry } => {
            let value = serde_json::to_string(entry).map_err(|e| e.to_string())?;
            pipe.cmd("HSET")
                .arg(pushed::HASH)
                .arg(kind.field(id))
                .arg(value);
        }
        Change::Lift { kind, id } => {
            let mut fields = vec![kind.field(id)];
            if *kind == Kind::Agent {
                fields.push(Kind::Suspend.field(id));
            }
            pipe.cmd("HDEL").arg(pushed::HASH).arg(fields);
        }
    }
    pipe.cmd("INCR").arg(pushed::VERSION).ignore();
    pipe.cmd("PUBLISH")
        .arg(pushed::CHANNEL)
        .arg("changed")
        .ignore();
    let (changed,): (u64,) = pipe.query_async(con).await.map_err(|e| describe(&e))?;
    Ok(changed)
}
