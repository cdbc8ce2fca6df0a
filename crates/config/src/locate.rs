//! Finding the line of a dotted key (`sip.servers[1].port`) in a TOML text, so
//! errors found after deserializing still point at the right line.

use toml_edit::{Document, Item, Value};

/// 1-based line of `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_once('[').map_or((part, ""), |(n, r)| (n, r));
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some((idx, after)) = rest.split_once(']') {
            if let Ok(i) = idx.parse() {
                out.push(Segment::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or("");
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    /// The child under key `k`, with the span of the key.
    fn key(self, k: &str) -> Option<(Node<'a>, Option<std::ops::Range<usize>>)> {
        let table: &dyn toml_edit::TableLike = match self {
            Node::Item(it) => it.as_table_like()?,
            Node::Table(t) => t,
            Node::Value(Value::InlineTable(t)) => t,
            Node::Value(_) => return None,
        };
        let (key, child) = table.get_key_value(k)?;
        Some((Node::Item(child), key.span()))
    }

    fn index(self, i: usize) -> Option<(Node<'a>, Option<std::ops::Range<usize>>)> {
        match self {
            Node::Item(Item::ArrayOfTables(a)) => a.get(i).map(|t| (Node::Table(t), t.span())),
            Node::Item(Item::Value(Value::Array(a))) | Node::Value(Value::Array(a)) => {
                a.get(i).map(|v| (Node::Value(v), v.span()))
            }
            _ => None,
        }
    }
}

/// Line of the deepest part of `path` present in `text` (the key itself when it
/// is there, else its table), or `None` when not even the first part is.
pub(crate) fn line_of_key(text: &str, path: &str) -> Option<usize> {
    let doc = Document::parse(text).ok()?;
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for seg in segments(path) {
        let next = match seg {
            Segment::Key(k) => node.key(k),
            Segment::Index(i) => node.index(i),
        };
        let Some((child, span)) = next else { break };
        best = span.or(best);
        node = child;
    }
    best.map(|span| line_of(text, span.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\n[sip]\ntransport = \"udp\"\nservers = [\n  { host = \"a\" },\n  { host = \"b\", port = 0 },\n]\n\n[[extra]]\nx = 1\n[[extra]]\ny = 2\n";

    #[test]
    fn finds_keys_in_tables_inline_tables_and_arrays() {
        assert_eq!(line_of_key(TEXT, "sip.transport"), Some(3));
        assert_eq!(line_of_key(TEXT, "sip.servers"), Some(4));
        assert_eq!(line_of_key(TEXT, "sip.servers[1].port"), Some(6));
        assert_eq!(line_of_key(TEXT, "extra[1].y"), Some(12));
    }

    #[test]
    fn missing_keys_fall_back_to_the_deepest_known_part() {
        assert_eq!(line_of_key(TEXT, "sip.nothing"), Some(2));
        assert_eq!(line_of_key(TEXT, "nothing.at.all"), None);
    }
}
