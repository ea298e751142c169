//! `keys_file`: one key per line, `id<TAB>tier<TAB>sha256[<TAB>expires]`, streamed straight
//! into the key table (no YAML or serde tree in between, one reused line buffer), so a million
//! lines load in about a second with no more memory than the table itself.
//!
//! Blank lines and lines starting with `#` are skipped. The first bad line is refused with
//! `file:line:column: field `name``, like any config error; the running keys then stay.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::super::error::ConfigError;
use super::super::key_table::{Duplicate, InternError, KeyTableBuilder};
use super::keys::TableError;
use super::{is_label, sha256_hex};

/// The longest line read; anything longer is not a key line.
const MAX_LINE: usize = 4096;
/// About the length of a line (`id`, `tier`, 64 hex, tabs): sizes the table before reading.
const TYPICAL_LINE: u64 = 90;
const FIELDS: [&str; 4] = ["id", "tier", "sha256", "expires"];
const TOO_MANY_IDS: &str = "too many ids for one key table";
const SHAPE: &str = "a line is `id<TAB>tier<TAB>sha256`, with an optional fourth field `expires`";

/// One line of the file, for errors.
struct Cx<'a> {
    path: &'a Path,
    line: usize,
}

/// A field of a line: its name and its 1-based column.
struct Field {
    name: &'static str,
    column: usize,
}

impl Cx<'_> {
    fn at(&self, field: &Field, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.path.to_path_buf(),
            line: self.line,
            column: field.column,
            field: field.name.to_string(),
            message: message.into(),
        }
    }
}

/// Reads every line of `path` into `b`; returns the SHA-256 of the file's bytes.
/// `yaml_ids` ids were interned from `keys:` and may not appear here.
pub(super) fn stream(
    path: &Path,
    b: &mut KeyTableBuilder,
    yaml_ids: u32,
) -> Result<[u8; 32], TableError> {
    let file = std::fs::File::open(path).map_err(TableError::Unreadable)?;
    if let Ok(m) = file.metadata() {
        b.reserve((m.len() / TYPICAL_LINE) as usize);
    }
    let mut reader = BufReader::with_capacity(256 << 10, file);
    let mut line = Vec::with_capacity(256);
    let mut hasher = Sha256::new();
    let mut number = 0;
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(TableError::Unreadable)?;
        if read == 0 {
            break;
        }
        number += 1;
        let cx = Cx { path, line: number };
        if line.len() > MAX_LINE {
            let f = Field {
                name: "id",
                column: 1,
            };
            return Err(TableError::Config(
                cx.at(&f, format!("the line is longer than {MAX_LINE} bytes")),
            ));
        }
        hasher.update(&line);
        parse_line(&cx, &line, b, yaml_ids).map_err(TableError::Config)?;
    }
    Ok(hasher.finalize().into())
}

/// A line's tab-separated fields with the column each starts at, how many there are, and the
/// column just past the line (where a missing field is reported).
type Fields<'l> = [(&'l [u8], usize); 4];

fn split_fields<'l>(
    cx: &Cx<'_>,
    line: &'l [u8],
) -> Result<(Fields<'l>, usize, usize), ConfigError> {
    let mut fields: Fields<'l> = [(&[], 0); 4];
    let mut count = 0;
    let mut column = 1;
    for part in line.split(|&c| c == b'\t') {
        if count == 4 {
            let f = Field {
                name: "expires",
                column,
            };
            return Err(cx.at(&f, format!("too many fields: {SHAPE}")));
        }
        fields[count] = (part, column);
        count += 1;
        column += part.len() + 1;
    }
    Ok((fields, count, column))
}

/// One line into the table.
fn parse_line(
    cx: &Cx<'_>,
    raw: &[u8],
    b: &mut KeyTableBuilder,
    yaml_ids: u32,
) -> Result<(), ConfigError> {
    let line = raw.strip_suffix(b"\n").unwrap_or(raw);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.trim_ascii().is_empty() || line.first() == Some(&b'#') {
        return Ok(());
    }
    let (fields, count, column) = split_fields(cx, line)?;
    let field = |i: usize| Field {
        name: FIELDS[i],
        column: if i < count { fields[i].1 } else { column },
    };
    if count < 3 {
        return Err(cx.at(&field(count), format!("missing: {SHAPE}")));
    }
    let [(id, _), (tier, _), (hexed, _), (expires, _)] = fields;
    let id = std::str::from_utf8(id.trim_ascii())
        .ok()
        .filter(|s| is_label(s))
        .ok_or_else(|| {
            cx.at(
                &field(0),
                "ids may use letters, digits, '_', '-' and '.' (at most 64)",
            )
        })?;
    let tier = tier.trim_ascii();
    let tier_index = b
        .tier_index(tier)
        .ok_or_else(|| cx.at(&field(1), unknown_tier(b)))?;
    let digest = std::str::from_utf8(hexed)
        .ok()
        .and_then(sha256_hex)
        .ok_or_else(|| cx.at(&field(2), "must be 64 hex characters"))?;
    let expires = std::str::from_utf8(expires.trim_ascii()).unwrap_or("\u{0}");
    let expires_ms = match expires {
        "" => None,
        at => Some(rfc3339_ms(at).ok_or_else(|| {
            cx.at(
                &field(3),
                "must be an RFC 3339 instant, such as 2027-01-01T00:00:00Z",
            )
        })?),
    };
    let index = match b.intern(id, tier_index) {
        Ok(i) | Err(InternError::Tier { index: i, .. }) if i < yaml_ids => {
            return Err(cx.at(
                &field(0),
                format!(
                    "id '{id}' is also defined in `keys:` of the config (an id lives in one place)"
                ),
            ));
        }
        Ok(i) => i,
        Err(InternError::Tier { tier: had, .. }) => {
            return Err(cx.at(
                &field(1),
                format!(
                    "keys of one id must name one tier: this id has '{}' here and '{}' on an earlier line",
                    b.tier_name(tier_index),
                    b.tier_name(had)
                ),
            ));
        }
        // Past 2^30 ids (a file of tens of gigabytes): no test writes one, hence no row.
        Err(InternError::Full) => return Err(cx.at(&field(0), TOO_MANY_IDS)),
    };
    b.push(&digest, index, false, expires_ms);
    Ok(())
}

/// The message for a tier that is not configured. The value is not echoed: in a file of
/// columns, a value in the wrong place may be a raw key.
fn unknown_tier(b: &KeyTableBuilder) -> String {
    format!(
        "not a configured tier (defined: {})",
        b.tier_names().join(", ")
    )
}

/// An RFC 3339 instant in Unix milliseconds.
pub(super) fn rfc3339_ms(at: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The error for two keys with one digest: the file is read again (this is the error path
/// only) to name the line of the second, and the first one's line or `keys:`.
pub(super) fn duplicate(path: &Path, d: &Duplicate) -> ConfigError {
    let hexed = hex::encode(d.digest);
    // (line, column of its sha256 field) of every line holding that digest.
    let mut found = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
            let Ok(line) = line else { break };
            let mut column = 1;
            for (i, part) in line.split(|&c| c == b'\t').enumerate() {
                if i == 2 && part.len() >= 32 && part[..32].eq_ignore_ascii_case(hexed.as_bytes()) {
                    found.push((n + 1, column));
                }
                column += part.len() + 1;
            }
        }
    }
    let at = |(line, column): (usize, usize), message: String| {
        let f = Field {
            name: "sha256",
            column,
        };
        Cx { path, line }.at(&f, message)
    };
    match found.as_slice() {
        [(first, _), second, ..] => at(
            *second,
            format!("this key is already on line {first} (keys must be unique)"),
        ),
        [only] => at(
            *only,
            "this key is also in `keys:` of the config (keys must be unique)".into(),
        ),
        [] => at(
            (0, 0),
            format!(
                "ids '{}' and '{}' have one key (keys must be unique)",
                d.first, d.second
            ),
        ),
    }
}
