//! Rows for `keys_file`: each line of a keys file that is refused, with the
//! `line:col: field` and message it must name. The config is the minimal one of the other rows
//! (with tiers `t` and `u`) and `keys:` entries where a row needs them, and the file is written beside it.

/// 64 hex characters: a digest that no row's key has.
macro_rules! hex {
    () => {
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    };
}

pub struct TsvRow {
    /// Extra lines of the config (`keys:`), or "".
    pub yaml: &'static str,
    pub tsv: &'static str,
    pub at: &'static str,
    pub message: &'static str,
}

const fn tsv(
    yaml: &'static str,
    tsv: &'static str,
    at: &'static str,
    message: &'static str,
) -> TsvRow {
    TsvRow {
        yaml,
        tsv,
        at,
        message,
    }
}

pub const KEYS_FILE: &[TsvRow] = &[
    tsv(
        "",
        "# comment\n\na\tt\n",
        "3:5: field `sha256`",
        concat!(
            "missing: ",
            "a line is `id<TAB>tier<TAB>sha256`, with an optional fourth field `expires`"
        ),
    ),
    tsv(
        "",
        "a\n",
        "1:3: field `tier`",
        concat!(
            "missing: ",
            "a line is `id<TAB>tier<TAB>sha256`, with an optional fourth field `expires`"
        ),
    ),
    tsv(
        "",
        concat!("a\tt\t", hex!(), "\t2027-01-01T00:00:00Z\tx\n"),
        "1:91: field `expires`",
        concat!(
            "too many fields: ",
            "a line is `id<TAB>tier<TAB>sha256`, with an optional fourth field `expires`"
        ),
    ),
    tsv(
        "",
        concat!("a b\tt\t", hex!(), "\n"),
        "1:1: field `id`",
        "ids may use letters, digits, '_', '-' and '.' (at most 64)",
    ),
    tsv(
        "",
        concat!("a\trow-secret-key-0001\t", hex!(), "\n"),
        "1:3: field `tier`",
        "not a configured tier (defined: t, u)",
    ),
    tsv(
        "",
        "a\tt\trow-secret-key-0001\n",
        "1:5: field `sha256`",
        "must be 64 hex characters",
    ),
    tsv(
        "",
        concat!("a\tt\t", hex!(), "\tsoon\n"),
        "1:70: field `expires`",
        "must be an RFC 3339 instant, such as 2027-01-01T00:00:00Z",
    ),
    tsv(
        "keys: [{ id: a, key: \"row-secret-key-0001\", tier: t }]\n",
        concat!("b\tt\t", hex!(), "\na\tt\t", hex!(), "\n"),
        "2:1: field `id`",
        "id 'a' is also defined in `keys:` of the config (an id lives in one place)",
    ),
    tsv(
        "",
        concat!("a\tt\t", hex!(), "\na\tu\t", hex!(), "\n"),
        "2:3: field `tier`",
        "keys of one id must name one tier: this id has 'u' here and 't' on an earlier line",
    ),
    tsv(
        "",
        concat!("a\tt\t", hex!(), "\nb\tt\t", hex!(), "\n"),
        "2:5: field `sha256`",
        "this key is already on line 1 (keys must be unique)",
    ),
    tsv(
        // sha256("row-secret-key-0001")
        "keys: [{ id: a, key: \"row-secret-key-0001\", tier: t }]\n",
        "b\tt\tc5a45f6de4d024b59e5b324aaf8e30f0116b83cd7e435dbbe30e8a1b96012b66\n",
        "1:5: field `sha256`",
        "this key is also in `keys:` of the config (keys must be unique)",
    ),
];

/// A line longer than any key line (written by the test, not kept here).
pub const LONG_LINE: &str = "the line is longer than 4096 bytes";
