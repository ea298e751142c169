//! The `routes` section: prefixes (and methods, `route_match.rs`), the upstream each one
//! reaches, and what a request costs.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::error::ConfigError;
use super::super::schema::RawConfig;
use super::super::snapshot::{Route, UpstreamSettings};
use super::context::Cx;

/// The routes, longest prefix first (the first match is the longest).
pub(super) fn routes(
    cx: &Cx<'_>,
    raw: &RawConfig,
    upstreams: &HashMap<String, UpstreamSettings>,
) -> Result<Vec<Route>, ConfigError> {
    if raw.routes.is_empty() {
        return Err(cx.at("routes", "needs at least one route"));
    }
    super::route_match::check_routes(cx, raw)?;
    let mut out = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let f = format!("routes[{i}]");
        if !r.prefix.starts_with('/') {
            return Err(cx.at(&format!("{f}.prefix"), "must start with '/'"));
        }
        if !upstreams.contains_key(&r.upstream) {
            return Err(cx.at(
                &format!("{f}.upstream"),
                unknown_upstream(&r.upstream, upstreams),
            ));
        }
        if r.cost == 0 {
            return Err(cx.at(&format!("{f}.cost"), "must be at least 1"));
        }
        out.push(Route {
            name: Arc::from(super::route_match::route_name(r)),
            prefix: r.prefix.clone(),
            methods: super::route_match::parse_methods(&r.methods),
            upstream: r.upstream.clone(),
            strip_prefix: r.strip_prefix,
            cost: r.cost,
            preserve_host: r.preserve_host,
        });
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(out)
}

fn unknown_upstream(name: &str, upstreams: &HashMap<String, UpstreamSettings>) -> String {
    let mut known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    known.sort_unstable();
    format!("unknown upstream '{name}' (defined: {})", known.join(", "))
}
