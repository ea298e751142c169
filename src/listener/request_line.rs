//! Finds the request lines that Pingora would silently repair.
//!
//! When httparse refuses a request line, Pingora percent-encodes a space, a control character,
//! `<`, `>` and `"` in the target and parses it again, so `GET /a b HTTP/1.1` reaches the
//! upstream as `/a%20b`. RFC 9112 §3.2 wants a 400 instead, and the repaired request cannot be
//! told apart from an honest `/a%20b` once parsed. So the bytes are looked at as they are read:
//! every line shaped like Pingora's pattern (`^\w+ (.+) HTTP/\d(\.\d)?`) whose target holds
//! such a byte is remembered in its repaired form, and a request whose line equals one of
//! those is refused. Memory is bounded per connection.

/// Lines remembered per connection; past this, every request with a `%` in its target is
/// refused on that connection (only a hostile client sends so many broken lines).
const MAX_REMEMBERED: usize = 16;
/// The longest line remembered, and carried over from one read to the next.
const MAX_LINE: usize = 8 * 1024;

/// Bytes that Pingora's repair percent-encodes (its `URI_ESC_CHARSET`).
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == 0x7f || matches!(b, b' ' | b'<' | b'>' | b'"')
}

/// Where the target of a request line ends: at the ` HTTP/1.x` that ends the line. Pingora's
/// pattern takes the last ` HTTP/<digit>`, and its repaired line must then parse, so only a
/// line that ends in a version can have been repaired into a request (an access-log line
/// quoting a request, `"GET /a b HTTP/1.1" 200`, cannot).
fn target_end(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let end = line.len().checked_sub(9)?;
    let tail = &line[end..];
    (tail.starts_with(b" HTTP/1.") && tail[8].is_ascii_digit()).then_some(end)
}

/// Whether `line` may be a request line that Pingora repairs: something after its first space
/// and before its version needs escaping. A request that follows a body on the same line
/// (pipelined after `Content-Length` bytes) is covered: its start is found at check time.
fn is_suspicious(line: &[u8]) -> bool {
    let Some(end) = target_end(line) else {
        return false;
    };
    let Some(first_space) = memchr::memchr(b' ', line) else {
        return false;
    };
    first_space < end && line[first_space + 1..end].iter().any(|b| needs_escape(*b))
}

/// `target` as Pingora's repair writes it.
fn escaped(target: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(target.len() * 3);
    for &b in target {
        if needs_escape(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Whether `line` holds the request `method` whose target Pingora repaired into `target`.
fn repaired_into(line: &[u8], method: &[u8], target: &[u8]) -> bool {
    let Some(end) = target_end(line) else {
        return false;
    };
    let mut needle = method.to_vec();
    needle.push(b' ');
    memchr::memmem::find_iter(&line[..end], &needle).any(|i| {
        let raw = &line[i + needle.len()..end];
        // An absolute-form target is parsed down to its path: compare the end.
        !raw.is_empty() && escaped(raw).ends_with(target)
    })
}

/// The read side of one connection.
#[derive(Debug, Default)]
pub struct LineScanner {
    /// The unfinished last line of the previous read.
    carry: Vec<u8>,
    /// The unfinished line grew past `MAX_LINE` and was dropped.
    carry_dropped: bool,
    suspicious: Vec<Box<[u8]>>,
    overflowed: bool,
}

impl LineScanner {
    /// Looks at bytes just read from the client.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if !self.carry.is_empty() || self.carry_dropped {
            match memchr::memchr(b'\n', bytes) {
                Some(i) => {
                    let mut line = std::mem::take(&mut self.carry);
                    line.extend_from_slice(&bytes[..i]);
                    if std::mem::take(&mut self.carry_dropped) {
                        // Only the end of an overlong line is left: any byte that needs
                        // escaping before its version may sit in a target.
                        self.overflowed |= target_end(&line)
                            .is_some_and(|end| line[..end].iter().any(|b| needs_escape(*b)));
                    } else {
                        self.check(&line);
                    }
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.carry_on(bytes);
                    return;
                }
            }
        }
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', bytes) {
            self.check(&bytes[start..i]);
            start = i + 1;
        }
        self.carry_on(&bytes[start..]);
    }

    /// Keeps the tail of a line for the next read; one too long to be remembered is dropped
    /// (and a request line that long would be refused as an oversized head anyway).
    fn carry_on(&mut self, tail: &[u8]) {
        if !self.carry_dropped && self.carry.len() + tail.len() <= MAX_LINE {
            self.carry.extend_from_slice(tail);
        } else {
            self.carry.clear();
            self.carry_dropped = true;
        }
    }

    fn check(&mut self, line: &[u8]) {
        if !is_suspicious(line) {
            return;
        }
        if line.len() > MAX_LINE || self.suspicious.len() == MAX_REMEMBERED {
            self.overflowed = true;
            return;
        }
        self.suspicious.push(line.into());
    }

    /// Whether the request `method target` (as Pingora parsed it) is a repaired line.
    pub fn was_repaired(&self, method: &[u8], target: &[u8]) -> bool {
        if !target.contains(&b'%') {
            return false;
        }
        self.overflowed
            || self
                .suspicious
                .iter()
                .any(|line| repaired_into(line, method, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(lines: &[&[u8]], method: &[u8], target: &[u8]) -> bool {
        let mut s = LineScanner::default();
        for l in lines {
            s.feed(l);
        }
        s.was_repaired(method, target)
    }

    #[test]
    fn repaired_lines_follow_pingoras_pattern() {
        assert!(repaired(&[b"GET /a b HTTP/1.1\r\n"], b"GET", b"/a%20b"));
        assert!(repaired(&[b"GET /\x01x HTTP/1.1\r\n"], b"GET", b"/%01x"));
        assert!(repaired(&[b"GET /a\tb HTTP/1.1\r\n"], b"GET", b"/a%09b"));
        assert!(repaired(
            &[b"GET /a HTTP/1.1 HTTP/1.1\r\n"],
            b"GET",
            b"/a%20HTTP/1.1"
        ));
        assert!(repaired(
            &[b"GET http://h/a b HTTP/1.1\r\n"],
            b"GET",
            b"/a%20b"
        ));
        // An honest percent-encoded target is not a repair.
        assert!(!repaired(&[b"GET /a%20b HTTP/1.1\r\n"], b"GET", b"/a%20b"));
        assert!(!repaired(&[b"GET /a b HTTP/1.1\r\n"], b"GET", b"/a%20c"));
        assert!(!repaired(&[b"GET /a b HTTP/1.1\r\n"], b"POST", b"/a%20b"));
        assert!(!is_suspicious(b"GET /clean HTTP/1.1\r"));
        assert!(!is_suspicious(b"some body text"));
        // Access-log lines quote request lines but do not end in a version.
        assert!(!is_suspicious(
            b"1.2.3.4 - - [01/Dec/2026] \"GET /a b HTTP/1.1\" 200 12"
        ));
    }

    #[test]
    fn a_request_glued_to_a_body_and_split_across_reads_is_found() {
        let reads: &[&[u8]] = &[
            b"POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /a",
            b" b HT",
            b"TP/1.1\r\nHost: x\r\n\r\n",
        ];
        assert!(repaired(reads, b"GET", b"/a%20b"));
        assert!(!repaired(reads, b"GET", b"/clean"));
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = LineScanner::default();
        s.feed(&[0xffu8; 70_000]);
        assert!(s.carry.len() <= MAX_LINE);
        for i in 0..40 {
            s.feed(format!("GET /x{i} y HTTP/1.1\r\n").as_bytes());
        }
        assert!(s.suspicious.len() <= MAX_REMEMBERED);
        assert!(s.was_repaired(b"GET", b"/anything%20"));
    }

    #[test]
    fn an_overlong_repaired_line_split_across_reads_poisons_the_connection() {
        let mut s = LineScanner::default();
        s.feed(b"GET /");
        s.feed(&[b'a'; 9000]);
        s.feed(b" b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(s.was_repaired(b"GET", b"/aaa%20b"));
        let mut clean = LineScanner::default();
        clean.feed(&[b'x'; 9000]);
        clean.feed(b"\r\nGET /ok%20 HTTP/1.1\r\n");
        assert!(!clean.was_repaired(b"GET", b"/ok%20"));
    }
}
