//! A plain tunnel's bytes, both ways, until both sides are done, one side fails, nothing moves
//! for the idle timeout, the tunnel reaches its longest life, or its agent loses the right to
//! keep it. Each write toward either side is flushed at once: interactive protocols exchange
//! a few bytes at a time.

use std::time::Duration;

use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed.
    Closed,
    /// A read or write failed.
    Broken,
    /// Nothing moved either way for the idle timeout.
    Idle,
    /// The tunnel reached its longest life.
    MaxDuration,
    /// Its agent lost the right to keep it open (revoked, suspended, outside its schedule…).
    Revoked,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Broken => "broken",
            End::Idle => "idle_timeout",
            End::MaxDuration => "max_duration",
            End::Revoked => "revoked",
        }
    }
}

/// What went through a tunnel.
#[derive(Debug, Clone, Copy)]
pub struct Piped {
    /// Bytes from the agent to the destination.
    pub up: u64,
    /// Bytes from the destination to the agent.
    pub down: u64,
    pub end: End,
}

/// How long a tunnel may live, and how often its right to is judged again.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub max: Duration,
    pub recheck: Duration,
}

/// Pipes `client` ⇄ `upstream`, asking `keep` every `limits.recheck` whether to go on.
pub async fn run(
    client: Stream,
    upstream: TcpStream,
    limits: Limits,
    mut keep: impl FnMut() -> bool,
) -> Piped {
    let Limits { idle, max, recheck } = limits;
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let mut piped = Piped {
        up: 0,
        down: 0,
        end: End::Closed,
    };
    let (mut client_open, mut upstream_open) = (true, true);
    let deadline = tokio::time::Instant::now() + max;
    let mut rechecks = tokio::time::interval(recheck);
    rechecks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since = tokio::time::Instant::now();
    while client_open || upstream_open {
        tokio::select! {
            read = client_read.read(&mut up_buf), if client_open => match read {
                Ok(0) => {
                    client_open = false;
                    let _ = upstream_write.shutdown().await;
                }
                Ok(n) => {
                    if upstream_write.write_all(&up_buf[..n]).await.is_err() {
                        piped.end = End::Broken;
                        break;
                    }
                    piped.up += n as u64;
                    idle_since = tokio::time::Instant::now();
                }
                Err(_) => {
                    piped.end = End::Broken;
                    break;
                }
            },
            read = upstream_read.read(&mut down_buf), if upstream_open => match read {
                Ok(0) => {
                    upstream_open = false;
                    let _ = client_write.shutdown().await;
                }
                Ok(n) => {
                    let written = client_write.write_all(&down_buf[..n]).await;
                    if written.is_err() || client_write.flush().await.is_err() {
                        piped.end = End::Broken;
                        break;
                    }
                    piped.down += n as u64;
                    idle_since = tokio::time::Instant::now();
                }
                Err(_) => {
                    piped.end = End::Broken;
                    break;
                }
            },
            () = tokio::time::sleep_until(idle_since + idle) => {
                piped.end = End::Idle;
                break;
            }
            _ = rechecks.tick() => {
                if !keep() {
                    piped.end = End::Revoked;
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                piped.end = End::MaxDuration;
                break;
            }
        }
    }
    let _ = client_write.shutdown().await;
    piped
}
