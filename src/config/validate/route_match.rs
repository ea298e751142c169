//! Route `name` and `methods`: what policies match and what the `route` label says.
//!
//! Two routes may share a prefix only when their methods do not overlap, so the longest-prefix
//! rule still picks exactly one route (checked first: it is the likelier mistake). Names must
//! be unique (policies refer to them).

use std::collections::HashSet;

use super::super::error::ConfigError;
use super::super::schema::{RawConfig, RawRoute};
use super::context::Cx;
use super::is_label;

/// Checks every route's name and methods, and that no two routes can match the same request.
pub(super) fn check_routes(cx: &Cx<'_>, raw: &RawConfig) -> Result<(), ConfigError> {
    for (i, r) in raw.routes.iter().enumerate() {
        let clash = raw.routes[..i]
            .iter()
            .find(|o| o.prefix == r.prefix && overlap(&o.methods, &r.methods));
        if clash.is_some() {
            return Err(cx.at(
                &format!("routes[{i}].prefix"),
                format!(
                    "duplicate prefix '{}' for the same methods (give each route its own `methods`)",
                    r.prefix
                ),
            ));
        }
    }
    let mut names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let f = format!("routes[{i}]");
        if let Some(name) = &r.name {
            if !is_label(name) {
                return Err(cx.at(
                    &format!("{f}.name"),
                    "route names may use letters, digits, '_', '-' and '.' (at most 64)",
                ));
            }
        }
        if !names.insert(route_name(r)) {
            return Err(cx.at(
                &format!("{f}.name"),
                format!(
                    "duplicate route name '{}' (routes that share a prefix need distinct names)",
                    route_name(r)
                ),
            ));
        }
        if let Some(ms) = &r.methods {
            check_methods(cx, &format!("{f}.methods"), ms)?;
        }
    }
    Ok(())
}

/// The route's name: its `name`, or its prefix.
pub(super) fn route_name(r: &RawRoute) -> &str {
    r.name.as_deref().unwrap_or(&r.prefix)
}

/// A list of methods: not empty, each an upper-case token, no repeats.
pub(super) fn check_methods(cx: &Cx<'_>, f: &str, ms: &[String]) -> Result<(), ConfigError> {
    if ms.is_empty() {
        return Err(cx.at(
            f,
            "needs at least one method (leave `methods` out to match any)",
        ));
    }
    for (j, m) in ms.iter().enumerate() {
        let valid = !m.is_empty()
            && m.len() <= 32
            && m.bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
        if !valid || http::Method::from_bytes(m.as_bytes()).is_err() {
            return Err(cx.at(
                &format!("{f}[{j}]"),
                format!("'{m}' is not an HTTP method (methods are upper case: GET, POST, ...)"),
            ));
        }
        if ms[..j].contains(m) {
            return Err(cx.at(&format!("{f}[{j}]"), format!("'{m}' is listed twice")));
        }
    }
    Ok(())
}

/// Parsed methods of an already checked list.
pub(super) fn parse_methods(ms: &Option<Vec<String>>) -> Option<Vec<http::Method>> {
    ms.as_ref().map(|ms| {
        ms.iter()
            .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .collect()
    })
}

fn overlap(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
        _ => true,
    }
}
