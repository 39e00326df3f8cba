//! Talking to the fleet's Redis: connecting, the lease scripts, the pushed revocation list.
//!
//! Every change to a shared counter is one Lua script, so it is atomic in Redis whatever the
//! other Wardens do at the same time. Keys live under `warden:`; a fixed window's counter has
//! the window's number in its key and expires after the window.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, Script};

use super::lease::{Ask, Grant, Lease, Meter};
use super::metrics::FleetMetrics;
use super::pushed::{self, Pushed};
use super::spec::FleetSettings;

/// How long connecting, and any one command, may take before Redis counts as unreachable.
pub const TIMEOUT: Duration = Duration::from_millis(1000);

/// Charge a window's debt, grant what fits: `KEYS[1]` counter; `ARGV` limit, debt, want, ttl.
const WINDOW_TAKE: &str = r"
local used = redis.call('INCRBY', KEYS[1], ARGV[2])
local grant = math.min(tonumber(ARGV[3]), math.max(0, tonumber(ARGV[1]) - used))
if grant > 0 then used = redis.call('INCRBY', KEYS[1], grant) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {grant, math.max(0, tonumber(ARGV[1]) - used), 0}
";

/// Give back up to `ARGV[1]` units of a window's counter.
const WINDOW_RETURN: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(used, tonumber(ARGV[1]))
if back > 0 then redis.call('DECRBY', KEYS[1], back) end
return back
";

/// A GCRA bucket of `ARGV[1]` per minute kept as its theoretical arrival time (ms, Redis'
/// clock): charge `ARGV[2]` of debt, grant up to `ARGV[3]`; the third value is the wait (ms)
/// until one more fits when nothing was granted.
const RATE_TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = 60000 / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + tonumber(ARGV[2]) * interval
local room = math.floor((now + 60000 - tat) / interval)
local grant = math.max(0, math.min(tonumber(ARGV[3]), room))
tat = tat + grant * interval
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
local retry = 0
if grant == 0 then retry = math.max(1, math.ceil(tat + interval - now - 60000)) end
return {grant, math.max(0, room - grant), retry}
";

/// Give back `ARGV[2]` requests to a GCRA bucket of `ARGV[1]` per minute.
const RATE_RETURN: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then return 0 end
tat = math.max(now, tat - tonumber(ARGV[2]) * 60000 / tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
return 1
";

/// The lease scripts, hashed once (Redis runs them by SHA-1, loading them when it does not
/// know them yet).
struct Scripts {
    window_take: Script,
    window_return: Script,
    rate_take: Script,
    rate_return: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    window_take: Script::new(WINDOW_TAKE),
    window_return: Script::new(WINDOW_RETURN),
    rate_take: Script::new(RATE_TAKE),
    rate_return: Script::new(RATE_RETURN),
});

/// A client for `settings`, with the password read from its environment variable.
pub fn client(settings: &FleetSettings) -> Result<Client, String> {
    let mut info = settings
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("invalid Redis URL: {e}"))?;
    if let Some(var) = &settings.password_env {
        let password = std::env::var(var).map_err(|_| {
            format!("environment variable {var} (`fleet.redis.password_env`) is not set")
        })?;
        let redis = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(redis);
    }
    Client::open(info).map_err(|e| format!("invalid Redis settings: {e}"))
}

/// Connects, waiting at most [`TIMEOUT`] for the connection and for each later reply.
pub async fn connect(client: &Client) -> Result<MultiplexedConnection, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| describe(&e))
}

/// A Redis error in words that never include the password (the URL is not part of them).
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "Redis did not answer in time".into()
    } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
        format!("cannot reach Redis ({e})")
    } else {
        format!("Redis refused: {e}")
    }
}

/// The Redis key of `lease` in `window`.
fn key(lease: &Lease, window: i64) -> String {
    match lease.meter {
        Meter::Rate => format!("warden:{}", lease.key),
        Meter::Window { .. } => format!("warden:{}:{window}", lease.key),
    }
}

/// Runs one lease refill: pays the debt and takes a new slice.
pub async fn refill(
    con: &mut MultiplexedConnection,
    lease: &Lease,
    ask: Ask,
    metrics: &FleetMetrics,
) -> Result<Grant, String> {
    let (script, ttl) = match lease.meter {
        Meter::Rate => (&SCRIPTS.rate_take, 0),
        Meter::Window { ttl_secs } => (&SCRIPTS.window_take, ttl_secs),
    };
    let started = Instant::now();
    let answer: Result<(u64, u64, u64), _> = script
        .key(key(lease, ask.window))
        .arg(lease.limit)
        .arg(ask.debt)
        .arg(ask.want)
        .arg(ttl)
        .invoke_async(con)
        .await;
    metrics.round_trip(started.elapsed(), answer.is_ok());
    let (granted, left, retry_ms) = answer.map_err(|e| describe(&e))?;
    Ok(Grant {
        granted,
        left,
        retry_after: (retry_ms > 0).then(|| Duration::from_millis(retry_ms)),
    })
}

/// Gives back `units` of an idle lease taken in `window`.
pub async fn give_back(
    con: &mut MultiplexedConnection,
    lease: &Lease,
    window: i64,
    units: u64,
    metrics: &FleetMetrics,
) -> Result<(), String> {
    let started = Instant::now();
    let answer: Result<u64, _> = match lease.meter {
        Meter::Rate => {
            SCRIPTS
                .rate_return
                .key(key(lease, window))
                .arg(lease.limit)
                .arg(units)
                .invoke_async(con)
                .await
        }
        Meter::Window { .. } => {
            SCRIPTS
                .window_return
                .key(key(lease, window))
                .arg(units)
                .invoke_async(con)
                .await
        }
    };
    metrics.round_trip(started.elapsed(), answer.is_ok());
    answer.map(drop).map_err(|e| describe(&e))
}

/// The version of the pushed list (`None`: Redis has none, e.g. it restarted empty).
pub async fn pushed_version(
    con: &mut MultiplexedConnection,
    metrics: &FleetMetrics,
) -> Result<Option<i64>, String> {
    let started = Instant::now();
    let answer: Result<Option<i64>, _> = redis::cmd("GET")
        .arg(pushed::VERSION)
        .query_async(con)
        .await;
    metrics.round_trip(started.elapsed(), answer.is_ok());
    answer.map_err(|e| describe(&e))
}

/// The pushed list's hash, field by field.
type Fields = Vec<(String, String)>;

/// Reads the whole pushed list and its version, in one transaction.
pub async fn read_pushed(
    con: &mut MultiplexedConnection,
    metrics: &FleetMetrics,
) -> Result<(Option<i64>, Pushed), String> {
    let started = Instant::now();
    let answer: redis::RedisResult<(Option<i64>, Fields)> = redis::pipe()
        .atomic()
        .cmd("GET")
        .arg(pushed::VERSION)
        .cmd("HGETALL")
        .arg(pushed::HASH)
        .query_async(con)
        .await;
    metrics.round_trip(started.elapsed(), answer.is_ok());
    let (version, fields) = answer.map_err(|e| describe(&e))?;
    let (list, unreadable) = Pushed::from_fields(fields);
    if unreadable > 0 {
        log::warn!(
            "fleet: {unreadable} pushed revocation entries in Redis cannot be read; skipped"
        );
    }
    Ok((version, list))
}

/// How long Redis keeps a record of which agent created a provider object (providers keep
/// stored responses 30 days).
pub const OBJECT_OWNER_TTL_SECS: u64 = 30 * 24 * 3600;

fn object_key(id: &str) -> String {
    format!("warden:object:{id}")
}

/// Records `owner` (opaque to the fleet) for object `id`, unless one is recorded already: the
/// first creator keeps it.
pub async fn set_object_owner(
    con: &mut MultiplexedConnection,
    id: &str,
    owner: &str,
    metrics: &FleetMetrics,
) -> Result<(), String> {
    let started = Instant::now();
    let answer: redis::RedisResult<Option<String>> = redis::cmd("SET")
        .arg(object_key(id))
        .arg(owner)
        .arg("NX")
        .arg("EX")
        .arg(OBJECT_OWNER_TTL_SECS)
        .query_async(con)
        .await;
    metrics.round_trip(started.elapsed(), answer.is_ok());
    answer.map(drop).map_err(|e| describe(&e))
}

/// The owner recorded for object `id`, if any.
pub async fn object_owner(
    con: &mut MultiplexedConnection,
    id: &str,
    metrics: &FleetMetrics,
) -> Result<Option<String>, String> {
    let started = Instant::now();
    let answer: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg(object_key(id)).query_async(con).await;
    metrics.round_trip(started.elapsed(), answer.is_ok());
    answer.map_err(|e| describe(&e))
}
