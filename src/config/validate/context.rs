//! The validation context: where in the file a field sits, and how a serde error becomes a
//! [`ConfigError`] that names the file, the line and the field without echoing a secret.

use std::path::Path;

use super::super::error::ConfigError;
use super::super::positions::Positions;

/// The file being validated and the position of every field in it.
pub(super) struct Cx<'a> {
    pub path: &'a Path,
    pub positions: Positions,
}

impl Cx<'_> {
    /// An error about `field`, placed at the field's line and column.
    pub fn at(&self, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.positions.locate(field);
        self.error_at(line, column, field.to_string(), message.into())
    }

    fn error_at(&self, line: usize, column: usize, field: String, message: String) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line,
            column,
            field,
            message,
        }
    }

    /// serde_yaml's message reads `tiers.free.limits[0].window: invalid ... at line 9 column 17`;
    /// split it into field and message, and keep the position serde found.
    pub fn serde_error(&self, e: &serde_path_to_error::Error<serde_yaml::Error>) -> ConfigError {
        let tracked = e.path().to_string();
        let e = e.inner();
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        // serde_yaml repeats the position inside its message; we print it once, up front.
        let msg = strip_position(&e.to_string());
        let (field, message) = match msg.split_once(": ") {
            Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
            _ => (String::new(), msg),
        };
        let field = narrow_field(field, &tracked, &message);
        let message = redact(&field, &message);
        // The tracked path pins the key itself; serde's position is that of its container.
        let (line, column) = match self.positions.locate(&field) {
            (0, _) => (line, column),
            pos if pos.0 >= line => pos,
            _ => (line, column),
        };
        self.error_at(line, column, field, message)
    }
}

/// An unknown field names itself in the message; point the field at it. Otherwise narrow the
/// container serde named down to the key at the error's position.
fn narrow_field(field: String, tracked: &str, message: &str) -> String {
    match (field.is_empty(), unknown_field_name(message)) {
        (true, Some(name)) => name,
        (false, Some(name)) => format!("{field}.{name}"),
        _ if tracked.len() > field.len() && tracked != "." => tracked.to_string(),
        _ => field,
    }
}

/// Whether the value at `field` may be a secret: an API key (`keys[i].key`, or a whole entry
/// or list written where a key would be), a Redis URL (it may carry a password), or a token.
/// Every other value, and every field name, is safe to show.
fn is_secret_field(field: &str) -> bool {
    let under_keys = field == "keys"
        || field.strip_prefix("keys[").is_some_and(|rest| {
            let after = rest.split_once(']').map_or("", |(_, after)| after);
            after.is_empty() || after == ".key"
        });
    let redis_url = matches!(field, "redis" | "redis.url" | "redis.cluster")
        || field.starts_with("redis.cluster[");
    under_keys || redis_url || field.contains("token")
}

/// serde quotes the offending value in backticks. A value that may be a secret is masked; every
/// value is bounded, so a megabyte of garbage does not come back as a megabyte of error. The
/// names in an unknown, missing or duplicate field message are field names, never secret:
/// they stay.
pub(super) fn redact(field: &str, message: &str) -> String {
    const MAX: usize = 300;
    let names_only = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .any(|p| message.starts_with(p));
    let sensitive = !names_only && is_secret_field(field);
    // serde writes an unexpected string as `string "..."` (Debug-quoted), not in backticks.
    let masked;
    let message = if sensitive {
        masked = mask_debug_strings(message);
        masked.as_str()
    } else {
        message
    };
    let mut out = String::with_capacity(message.len().min(MAX));
    for (i, part) in message.split('`').enumerate() {
        let quoted = i % 2 == 1;
        if !quoted {
            out.push_str(part);
            continue;
        }
        out.push('`');
        if sensitive {
            out.push_str("(value hidden)");
        } else {
            out.push_str(&bounded(part, 64));
        }
        out.push('`');
    }
    bounded(&out, MAX)
}

/// Replaces the body of every `string "..."` (serde's description of an unexpected string value)
/// with `(value hidden)`. The body is Debug-escaped, so it ends at the first unescaped quote.
fn mask_debug_strings(message: &str) -> String {
    const OPEN: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i + OPEN.len()]);
        out.push_str("(value hidden)");
        let body = &rest[i + OPEN.len()..];
        let mut escaped = false;
        let end = body
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(body.len(), |(j, _)| j);
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// `s` cut to at most `max` bytes (on a character boundary), with `...` when cut.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Removes every " at line N column M" from a serde_yaml message.
fn strip_position(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let skip = tail
            .find(|c: char| !(c.is_ascii_digit() || c == ' ' || "column".contains(c)))
            .unwrap_or(tail.len());
        rest = &tail[skip..];
    }
    out.push_str(rest);
    out
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}
