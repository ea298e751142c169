//! Maps field paths (`tiers.free.limits[0].window`) to their line in the YAML source.
//!
//! serde tells us where a *syntax or type* error is, but a semantic error found after parsing
//! (an unknown tier, a duplicate key) has lost its position. This index, built from the YAML
//! event stream, gives it back.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Deeper than any real configuration (tollgate's own schema nests five levels). A document
/// nested deeper is refused before serde_yaml sees it: libyaml takes quadratic time over deep
/// flow nesting (`{a: {a: ...` of 200 kB: tens of seconds), and a recursive walk of deep block
/// nesting (`- - - ...`) overflows the stack.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Default)]
pub struct Positions {
    lines: HashMap<String, (usize, usize)>,
    /// Where the nesting first went past [`MAX_DEPTH`], if it did.
    pub too_deep: Option<(usize, usize)>,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Builder {
    stack: Vec<Frame>,
    out: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// The path of the node that is about to start, if it is a value (not a mapping key).
    fn value_path(&mut self, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.out
                    .entry(p.clone())
                    .or_insert((mark.line(), mark.col() + 1));
                Some(p)
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                    if key.is_none() {
                        let p = join(path, &value);
                        self.out.entry(p).or_insert((mark.line(), mark.col() + 1));
                        *key = Some(value);
                        return;
                    }
                }
                self.value_path(mark);
            }
            Event::Alias(_) => {
                self.value_path(mark);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Positions {
    /// Best effort: a document that does not parse yields an empty index (serde reports it).
    /// Events are pulled one by one (yaml-rust2's own `Parser::load` recurses once per nesting
    /// level), and the walk stops at the first document's end or past [`MAX_DEPTH`].
    pub fn index(source: &str) -> Positions {
        let mut b = Builder {
            stack: Vec::new(),
            out: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(source);
        let mut depth = 0usize;
        loop {
            let (ev, mark) = match parser.next_token() {
                Ok(e) => e,
                Err(e) => {
                    // The scanner's own limit on flow nesting (255 levels).
                    let too_deep = (e.info() == "recursion limit exceeded")
                        .then(|| (e.marker().line(), e.marker().col() + 1));
                    return Positions {
                        lines: HashMap::new(),
                        too_deep,
                    };
                }
            };
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Positions {
                            lines: HashMap::new(),
                            too_deep: Some((mark.line(), mark.col() + 1)),
                        };
                    }
                }
                Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
                Event::DocumentEnd | Event::StreamEnd => break,
                _ => {}
            }
            b.on_event(ev, mark);
        }
        Positions {
            lines: b.out,
            too_deep: None,
        }
    }

    /// The line and column of `field`, or of its nearest ancestor that has one.
    pub fn locate(&self, field: &str) -> (usize, usize) {
        let mut f = field;
        loop {
            if let Some(&pos) = self.lines.get(f) {
                return pos;
            }
            match f.rfind(['.', '[']) {
                Some(i) => f = &f[..i],
                None => return (0, 0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_and_flow_fields() {
        let src = "a: 1\ntiers:\n  free:\n    limits:\n      - { requests: 5, window: 1s }\nkeys:\n  - id: x\n    tier: free\n";
        let p = Positions::index(src);
        assert_eq!(p.locate("a").0, 1);
        assert_eq!(p.locate("tiers.free").0, 3);
        assert_eq!(p.locate("tiers.free.limits[0].window").0, 5);
        assert_eq!(p.locate("keys[0].tier").0, 8);
        assert_eq!(p.locate("keys[0].nothing").0, 7);
    }
}
