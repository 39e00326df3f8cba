//! An SSE upstream that streams as providers do, for `benches/load.sh`.
//!
//! nginx's `return 200 '…'` answers a whole stream in one write, so a proxy sees one body
//! chunk and its per-chunk cost never shows. A provider writes each event as the model produces
//! it. This server answers every request (HTTP/1.1, keep-alive, chunked) with 18 chat
//! completion chunks and `[DONE]`, each event in its own write on a `TCP_NODELAY` socket, and
//! yields to the other connections between events, so under load the events of one stream
//! interleave with other streams' instead of leaving in one burst.
//!
//! Usage: `sse_upstream LISTEN_ADDR` (e.g. `127.0.0.1:8081`). One thread, like nginx with one
//! worker.

use std::process::ExitCode;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The events of one stream, each already framed as one HTTP chunk.
fn stream_chunks() -> Vec<Vec<u8>> {
    let mut events: Vec<String> = (0..17)
        .map(|i| {
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[{{"index":0,"delta":{{"content":"word{i} "}},"finish_reason":null}}]}}"#
            )
        })
        .collect();
    events.push(
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":17,"total_tokens":37}}"#
            .to_owned(),
    );
    events.push("[DONE]".to_owned());
    events
        .iter()
        .map(|e| {
            let event = format!("data: {e}\n\n");
            format!("{:x}\r\n{event}\r\n", event.len()).into_bytes()
        })
        .collect()
}

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

/// Where a request's header ends and how long its body is, once the header is complete.
fn request_extent(buf: &[u8]) -> Option<(usize, usize)> {
    let end = memchr::memmem::find(buf, b"\r\n\r\n")? + 4;
    let header = std::str::from_utf8(&buf[..end]).ok()?;
    let length = header
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    Some((end, length))
}

async fn serve(mut socket: TcpStream, chunks: &[Vec<u8>]) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        let (head, body) = loop {
            if let Some(extent) = request_extent(&buf) {
                break extent;
            }
            if socket.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        while buf.len() < head + body {
            if socket.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        buf.drain(..head + body);
        socket.write_all(HEAD).await?;
        for chunk in chunks {
            tokio::task::yield_now().await;
            socket.write_all(chunk).await?;
        }
        socket.write_all(b"0\r\n\r\n").await?;
    }
}

fn main() -> ExitCode {
    let Some(listen) = std::env::args().nth(1) else {
        eprintln!("usage: sse_upstream LISTEN_ADDR");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sse_upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chunks: &'static [Vec<u8>] = Vec::leak(stream_chunks());
    runtime.block_on(async move {
        let listener = match TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("sse_upstream: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        loop {
            if let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move { serve(socket, chunks).await });
            }
        }
    })
}
