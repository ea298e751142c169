//! The API key header as the client sent it, checked before it is hashed.

/// Why a caller could not be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    UnknownKey,
    MissingKey,
    /// A configured key past its `expires` instant.
    ExpiredKey,
    /// A configured key with `disabled: true`.
    DisabledKey,
    /// The key header is present but not valid text (bytes outside visible ASCII).
    MalformedKey,
}

/// The key a request presents: `Ok(None)` when the header is absent or blank, `Err` when it
/// holds bytes no key can contain (so they are never hashed, logged or looked up).
pub fn presented_key(header: Option<&[u8]>) -> Result<Option<&[u8]>, Rejection> {
    match header.map(<[u8]>::trim_ascii) {
        Some(k) if !k.is_empty() => match k.iter().all(|b| b.is_ascii_graphic()) {
            true => Ok(Some(k)),
            false => Err(Rejection::MalformedKey),
        },
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_absent_and_controls_are_malformed() {
        assert_eq!(presented_key(None), Ok(None));
        assert_eq!(presented_key(Some(b"  ")), Ok(None));
        assert_eq!(presented_key(Some(b" abc ")), Ok(Some(&b"abc"[..])));
        assert_eq!(presented_key(Some(b"a\x01c")), Err(Rejection::MalformedKey));
        assert_eq!(
            presented_key(Some("ké".as_bytes())),
            Err(Rejection::MalformedKey)
        );
    }
}
