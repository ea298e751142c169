//! The `identity` section: the API key header, what anonymous and unknown callers get, and
//! which proxies are believed about the client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::super::error::ConfigError;
use super::super::schema::{RawAnonymous, RawIdentity};
use super::super::snapshot::{AnonymousPolicy, Tier};
use super::context::Cx;
use super::unknown_tier;

/// The validated `identity` section.
pub(super) struct Identity {
    pub key_header: http::HeaderName,
    pub anonymous: AnonymousPolicy,
    pub trusted_proxies: Vec<IpNet>,
    pub ipv6_prefix: u8,
}

pub(super) fn identity(
    cx: &Cx<'_>,
    id: &RawIdentity,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<Identity, ConfigError> {
    let key_header = http::HeaderName::from_bytes(id.header.trim().as_bytes()).map_err(|_| {
        cx.at(
            "identity.header",
            format!("'{}' is not a header name", id.header),
        )
    })?;
    if id.ipv6_prefix == 0 || id.ipv6_prefix > 128 {
        return Err(cx.at(
            "identity.ipv6_prefix",
            "must be between 1 and 128 (128: every IPv6 address on its own)",
        ));
    }
    Ok(Identity {
        key_header,
        ipv6_prefix: id.ipv6_prefix,
        anonymous: anonymous(cx, &id.anonymous, tiers)?,
        trusted_proxies: trusted_proxies(cx, &id.trusted_proxies)?,
    })
}

fn anonymous(
    cx: &Cx<'_>,
    a: &RawAnonymous,
    tiers: &HashMap<String, Arc<Tier>>,
) -> Result<AnonymousPolicy, ConfigError> {
    match a {
        RawAnonymous::Keyword(k) if k == "reject" => Ok(AnonymousPolicy::Reject),
        RawAnonymous::Keyword(k) => Err(cx.at(
            "identity.anonymous",
            format!("'{k}' is not valid (use `reject` or `{{ tier: <name> }}`)"),
        )),
        RawAnonymous::Tier(t) => tiers
            .get(&t.tier)
            .cloned()
            .map(AnonymousPolicy::Tier)
            .ok_or_else(|| cx.at("identity.anonymous.tier", unknown_tier(&t.tier, tiers))),
    }
}

fn trusted_proxies(cx: &Cx<'_>, proxies: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    proxies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    cx.at(
                        &format!("identity.trusted_proxies[{i}]"),
                        format!("'{p}' is not a CIDR or IP address"),
                    )
                })
        })
        .collect()
}
