//! What the upstream sees: the client's request with the path rewritten, hop-by-hop headers
//! and the API key removed, and the forwarding and identity headers added.

use http::header::{HeaderName, HOST};
use http::{HeaderValue, Uri};
use pingora::http::RequestHeader;
use pingora::Result;

use crate::config::Route;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static KEY_ID: HeaderName = HeaderName::from_static("x-tollgate-key-id");
static TIER: HeaderName = HeaderName::from_static("x-tollgate-tier");

/// Hop-by-hop headers (RFC 9110 §7.6.1) that must not be forwarded. `Transfer-Encoding` is
/// left to Pingora, which re-frames the body itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, UPGRADE};
    [
        CONNECTION,
        PROXY_AUTHENTICATE,
        PROXY_AUTHORIZATION,
        TE,
        TRAILER,
        UPGRADE,
    ]
    .contains(name)
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// The largest request head (request line and header fields) tollgate accepts: 32 KiB, as
/// Cloudflare's edge (nginx allows 4 x 8 KiB, Envoy 60 KiB). Pingora alone takes up to 1 MiB.
pub const MAX_REQUEST_HEAD: usize = 32 * 1024;

/// The size of `req`'s head as it came in: `METHOD target HTTP/1.1\r\n` plus
/// `name: value\r\n` for every field.
pub fn head_size(req: &RequestHeader) -> usize {
    let target = req.uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method.as_str().len() + 1 + target + 11;
    req.headers
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// Whether the client's `TE` lists `trailers`.
pub fn accepts_trailers(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// `/proxy/a/b?x=1` under prefix `/proxy/` becomes `/a/b?x=1`.
pub fn strip_prefix(uri: &Uri, prefix: &str) -> Option<String> {
    let path = uri.path();
    let rest = path.strip_prefix(prefix)?;
    let mut out = String::with_capacity(rest.len() + 2 + uri.query().map_or(0, |q| q.len() + 1));
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// The request-specific values the rewrite needs.
pub struct Forwarding<'a> {
    pub route: &'a Route,
    pub upstream_host: &'a HeaderValue,
    pub key_header: &'a HeaderName,
    /// The socket peer, appended to X-Forwarded-For.
    pub peer_ip: Option<String>,
    pub request_id: &'a HeaderValue,
    pub traceparent: Option<&'a HeaderValue>,
    pub key_id: Option<&'a HeaderValue>,
    pub tier: Option<&'a str>,
    /// The request arrived over TLS.
    pub https: bool,
    /// The upstream speaks HTTP/2 and the client sent `TE: trailers` (gRPC does): keep it, the
    /// one TE value HTTP/2 allows, which gRPC servers use to detect proxies that drop trailers.
    pub te_trailers: bool,
}

pub fn rewrite(req: &mut RequestHeader, f: &Forwarding<'_>) -> Result<()> {
    if f.route.strip_prefix {
        if let Some(p) = strip_prefix(&req.uri, &f.route.prefix) {
            if let Ok(uri) = p.parse::<Uri>() {
                req.set_uri(uri);
            }
        }
    }

    let client_host = req.headers.get(HOST).cloned();
    let websocket = req
        .headers
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));

    for n in &doomed_headers(req, f.key_header, websocket) {
        req.remove_header(n);
    }
    normalize_content_length(req)?;

    if !f.route.preserve_host {
        req.insert_header(HOST, f.upstream_host.clone())?;
    }
    if let Some(ip) = &f.peer_ip {
        let xff = match req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {ip}"),
            _ => ip.clone(),
        };
        req.insert_header("X-Forwarded-For", xff)?;
    }
    let proto = if f.https { "https" } else { "http" };
    req.insert_header("X-Forwarded-Proto", HeaderValue::from_static(proto))?;
    if f.te_trailers {
        req.insert_header(http::header::TE, HeaderValue::from_static("trailers"))?;
    }
    match client_host {
        Some(h) => req.insert_header("X-Forwarded-Host", h)?,
        None => {
            req.remove_header("x-forwarded-host");
        }
    }
    req.insert_header("X-Request-Id", f.request_id.clone())?;
    if let Some(tp) = f.traceparent {
        req.insert_header("traceparent", tp.clone())?;
    }
    if let Some(id) = f.key_id {
        req.insert_header("X-Tollgate-Key-Id", id.clone())?;
    }
    if let Some(tier) = f.tier {
        req.insert_header("X-Tollgate-Tier", tier)?;
    }
    Ok(())
}

/// One pass over the client's headers finds everything to drop: hop-by-hop headers (and
/// those that Connection names), the API key, and identity headers a client made up. Most
/// requests carry none of them, and then nothing is parsed or removed.
fn doomed_headers(
    req: &RequestHeader,
    key_header: &HeaderName,
    websocket: bool,
) -> Vec<HeaderName> {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in req.headers.keys() {
        let websocket_keep =
            websocket && (name == http::header::UPGRADE || name == http::header::CONNECTION);
        if (is_hop_by_hop(name) && !websocket_keep)
            || name == key_header
            || name == KEY_ID
            || name == TIER
        {
            doomed.push(name.clone());
        }
    }
    if req.headers.contains_key(http::header::CONNECTION) {
        let named = req
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .filter(|n| !(websocket && n == http::header::UPGRADE));
        doomed.extend(named);
    }
    doomed
}

/// Identical duplicate `Content-Length` values (`5` twice, or `5, 5`), which Pingora accepts,
/// go out as one field: RFC 9110 §8.6 has a forwarding recipient replace them, and a strict
/// upstream would refuse the request (or, worse, a lax one pick either). Differing values never
/// get here: Pingora refuses them with 400.
fn normalize_content_length(req: &mut RequestHeader) -> Result<()> {
    let values = req.headers.get_all(http::header::CONTENT_LENGTH);
    let mut iter = values.iter();
    let (Some(first), second) = (iter.next(), iter.next()) else {
        return Ok(());
    };
    if second.is_none() && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let single = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    req.insert_header(http::header::CONTENT_LENGTH, single)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_prefix_and_keeps_query() {
        let u: Uri = "/proxy/a/b?x=1".parse().unwrap();
        assert_eq!(strip_prefix(&u, "/proxy/").unwrap(), "/a/b?x=1");
        let u: Uri = "/proxy".parse().unwrap();
        assert_eq!(strip_prefix(&u, "/proxy").unwrap(), "/");
        let u: Uri = "/other".parse().unwrap();
        assert!(strip_prefix(&u, "/proxy/").is_none());
    }

    #[test]
    fn duplicate_content_lengths_go_out_as_one() {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.append_header("Content-Length", "5").unwrap();
        req.append_header("Content-Length", "5").unwrap();
        normalize_content_length(&mut req).unwrap();
        let v: Vec<_> = req.headers.get_all("content-length").iter().collect();
        assert_eq!(v, vec!["5"]);
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        req.insert_header("Content-Length", "7, 7").unwrap();
        normalize_content_length(&mut req).unwrap();
        assert_eq!(req.headers["content-length"], "7");
    }
}
