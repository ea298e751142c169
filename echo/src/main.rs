//! `tollgate-echo`: the upstream for tests, demos and benchmarks.
//!
//! Answers every request with a JSON echo of its method, path, query, headers and body length.
//! Query knobs: `status=NNN` (answer with that status), `delay_ms=N` (answer late),
//! `bytes=N` (stream an N-byte body instead), `abort_after=N` (send N body bytes of a longer
//! promised body, then cut the connection). The body is counted as it streams, never buffered,
//! so a 50 MB upload costs no memory. `/bench` answers a two-byte body: the cheapest upstream
//! for benchmarks. Every answer carries `x-echo-method` (the method received, which a HEAD
//! answer cannot echo in a body) and `x-echo-custom: kept`. `--name NAME` adds an
//! `x-echo-name: NAME` response header, so tests can tell the peers of a pool apart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use futures::stream;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    name = "tollgate-echo",
    about = "A fast JSON echo upstream for tollgate"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A name sent back in an `x-echo-name` response header (tells the instances of a pool apart).
    #[arg(long)]
    name: Option<String>,
}

/// The `--name` of this instance, if any.
static NAME: std::sync::OnceLock<hyper::header::HeaderValue> = std::sync::OnceLock::new();

type Body = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

const CHUNK: usize = 64 * 1024;

fn streamed(total: u64, fail_after: Option<u64>) -> Body {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = stream::unfold(0u64, move |sent| {
        let chunk = chunk.clone();
        async move {
            if let Some(limit) = fail_after {
                if sent >= limit {
                    return Some((Err(std::io::Error::other("aborted on purpose")), u64::MAX));
                }
            }
            if sent >= total {
                return None;
            }
            let n = (total - sent).min(CHUNK as u64) as usize;
            Some((Ok(Frame::data(chunk.slice(..n))), sent + n as u64))
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, mut body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("").to_string();
    let mut body_len: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_len += d.len() as u64;
                }
            }
            Err(_) => break,
        }
    }
    if let Some(ms) = query_param(&query, "delay_ms").and_then(|v| v.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(ms.min(600_000))).await;
    }
    let status = query_param(&query, "status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| hyper::StatusCode::from_u16(s).ok())
        .unwrap_or(hyper::StatusCode::OK);

    let mut builder = Response::builder()
        .status(status)
        .header("x-echo-server", "tollgate-echo")
        .header("x-echo-custom", "kept");
    // The method also as a header: a HEAD answer has no body to echo it in.
    if let Ok(method) = hyper::header::HeaderValue::from_str(parts.method.as_str()) {
        builder = builder.header("x-echo-method", method);
    }
    if let Some(name) = NAME.get() {
        builder = builder.header("x-echo-name", name.clone());
    }

    if parts.uri.path().ends_with("/bench") {
        return Ok(builder
            .header("content-type", "text/plain")
            .body(full("ok"))
            .unwrap_or_default());
    }
    if let Some(n) = query_param(&query, "bytes").and_then(|v| v.parse::<u64>().ok()) {
        let abort = query_param(&query, "abort_after").and_then(|v| v.parse::<u64>().ok());
        builder = builder
            .header("content-type", "application/octet-stream")
            .header("content-length", n);
        return Ok(builder.body(streamed(n, abort)).unwrap_or_default());
    }

    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(name.as_str().to_string(), serde_json::Value::String(v));
            }
        }
    }
    let echo = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": query,
        "headers": headers,
        "body_len": body_len,
    });
    Ok(builder
        .header("content-type", "application/json")
        .body(full(echo.to_string()))
        .unwrap_or_default())
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if let Some(name) = &args.name {
        let value = hyper::header::HeaderValue::from_str(name)
            .map_err(|_| std::io::Error::other("--name must be a valid header value"))?;
        let _ = NAME.set(value);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen).await?;
        eprintln!("tollgate-echo listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .await;
            });
        }
    })
}
