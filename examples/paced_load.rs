//! A fixed-rate load generator, for the latency `benches/load.sh` reports at a set rate.
//!
//! wrk sends as fast as the proxy answers, so its latencies are those of a saturated proxy.
//! The latency a user sees at a given load needs requests sent on a schedule: this sends
//! `RATE` requests per second, spread over `CONNECTIONS` keep-alive connections, each request
//! timed from the moment its first byte is written to the last byte of its answer.
//!
//! Usage: `paced_load ADDR PATH RATE SECONDS CONNECTIONS BODY_FILE [HEADER: VALUE]...`;
//! prints `requests errors p50_us p90_us p99_us p999_us max_us`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 response (`Content-Length` or chunked) and returns its status.
async fn read_response(socket: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let broken = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let head_end = loop {
        if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        fill(socket, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| broken("header"))?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| broken("status"))?;
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    buf.drain(..head_end);
    if chunked {
        loop {
            let line_end = loop {
                if let Some(end) = memchr::memmem::find(buf, b"\r\n") {
                    break end;
                }
                fill(socket, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| broken("chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or(""), 16)
                .map_err(|_| broken("chunk size"))?;
            let total = line_end + 2 + size + 2;
            while buf.len() < total {
                fill(socket, buf).await?;
            }
            buf.drain(..total);
            if size == 0 {
                return Ok(status);
            }
        }
    }
    while buf.len() < length {
        fill(socket, buf).await?;
    }
    buf.drain(..length);
    Ok(status)
}

async fn fill(socket: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    if socket.read_buf(buf).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// One connection's share of the schedule: a request every `interval` from `start`, until
/// `end`. Returns each request's latency (`None` for an error answer).
async fn connection(
    addr: String,
    request: Vec<u8>,
    start: Instant,
    interval: Duration,
    end: Instant,
) -> std::io::Result<Vec<Option<Duration>>> {
    let mut socket = TcpStream::connect(&addr).await?;
    socket.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut latencies = Vec::new();
    let mut next = start;
    while next < end {
        tokio::time::sleep_until(next.into()).await;
        let sent = Instant::now();
        socket.write_all(&request).await?;
        let status = read_response(&mut socket, &mut buf).await?;
        latencies.push((200..300).contains(&status).then(|| sent.elapsed()));
        next += interval;
    }
    Ok(latencies)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let usage = || {
        eprintln!(
            "usage: paced_load ADDR PATH RATE SECONDS CONNECTIONS BODY_FILE [HEADER: VALUE]..."
        );
        ExitCode::from(2)
    };
    let [_, addr, path, rate, secs, conns, body_file, headers @ ..] = args.as_slice() else {
        return usage();
    };
    let (Ok(rate), Ok(secs), Ok(conns)) = (
        rate.parse::<f64>(),
        secs.parse::<f64>(),
        conns.parse::<u32>(),
    ) else {
        return usage();
    };
    let body = match std::fs::read(body_file) {
        Ok(body) => body,
        Err(e) => {
            eprintln!("paced_load: {body_file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(&body);

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("paced_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let interval = Duration::from_secs_f64(f64::from(conns) / rate);
    let start = Instant::now() + Duration::from_millis(100);
    let end = start + Duration::from_secs_f64(secs);
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|i| {
                let offset = interval.mul_f64(f64::from(i) / f64::from(conns));
                let task = connection(addr.clone(), request.clone(), start + offset, interval, end);
                tokio::spawn(task)
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(latencies)) => all.extend(latencies),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(all)
    });
    let results = match results {
        Ok(results) => results,
        Err(e) => {
            eprintln!("paced_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let errors = results.iter().filter(|l| l.is_none()).count();
    let mut latencies: Vec<Duration> = results.iter().flatten().copied().collect();
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).map_or(0, |d| d.as_micros())
    };
    println!(
        "{} {errors} {} {} {} {} {}",
        results.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999),
        latencies.last().map_or(0, |d| d.as_micros())
    );
    ExitCode::SUCCESS
}
