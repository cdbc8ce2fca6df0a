//! The `Replaces` header (RFC 3891) of consulted transfer, and how it rides
//! inside a REFER's `Refer-To` URI (RFC 3515 §2.1, URI headers escaped).
//!
//! The tags are named from the point of view of the party whose dialog is
//! replaced: `to-tag` is its local tag, `from-tag` its peer's.

/// Longest Replaces value we accept (Call-ID and two tags).
const MAX_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    /// Only an early (unanswered) dialog may be replaced.
    pub early_only: bool,
}

impl Replaces {
    /// Parses a header value: `call-id;to-tag=a;from-tag=b[;early-only]`.
    pub fn parse(value: &str) -> Option<Replaces> {
        if value.len() > MAX_LEN || value.contains(['\r', '\n']) {
            return None;
        }
        let mut parts = value.split(';').map(str::trim);
        let call_id = parts.next().filter(|c| !c.is_empty() && !c.contains(char::is_whitespace))?.to_owned();
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            let (name, v) = p.split_once('=').map_or((p, ""), |(n, v)| (n.trim(), v.trim()));
            match name.to_ascii_lowercase().as_str() {
                "to-tag" => to_tag = Some(v.to_owned()),
                "from-tag" => from_tag = Some(v.to_owned()),
                "early-only" => early_only = true,
                _ => {}
            }
        }
        Some(Replaces { call_id, to_tag: to_tag?, from_tag: from_tag?, early_only })
    }

    pub fn to_header_value(&self) -> String {
        let early = if self.early_only { ";early-only" } else { "" };
        format!("{};to-tag={};from-tag={}{early}", self.call_id, self.to_tag, self.from_tag)
    }

    /// `uri?Replaces=…` for a Refer-To: the value escaped as a URI header.
    pub fn in_uri(&self, uri: &str) -> String {
        let mut escaped = String::new();
        for b in self.to_header_value().bytes() {
            if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
                escaped.push(b as char);
            } else {
                escaped.push_str(&format!("%{b:02X}"));
            }
        }
        format!("{uri}?Replaces={escaped}")
    }

    /// Splits a Refer-To URI into the URI to call and its Replaces, if any.
    /// Other embedded headers are dropped: we only act on this one.
    pub fn from_uri(uri: &str) -> (String, Option<Replaces>) {
        let Some((base, headers)) = uri.split_once('?') else { return (uri.to_owned(), None) };
        let replaces = headers
            .split('&')
            .filter_map(|h| h.split_once('='))
            .find(|(name, _)| name.eq_ignore_ascii_case("replaces"))
            .and_then(|(_, v)| percent_decode(v))
            .and_then(|v| Replaces::parse(&v));
        (base.to_owned(), replaces)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_refer_to_uri() {
        let r = Replaces {
            call_id: "a84b4c76e66710@pc33.example.com".into(),
            to_tag: "1234;x".into(),
            from_tag: "98%76".into(),
            early_only: false,
        };
        let uri = r.in_uri("sip:carol@example.com");
        assert!(
            uri.starts_with("sip:carol@example.com?Replaces=a84b4c76e66710%40pc33.example.com%3Bto-tag%3D"),
            "{uri}"
        );
        let header = &uri[uri.find('?').unwrap()..];
        assert!(!header.contains([';', '@']) && header.matches('=').count() == 1, "escaped: {header}");
        // Tags with ';' cannot survive the header grammar; plain tokens do.
        let plain = Replaces { to_tag: "1234".into(), from_tag: "9876".into(), ..r };
        let (base, back) = Replaces::from_uri(&plain.in_uri("sip:carol@example.com"));
        assert_eq!(base, "sip:carol@example.com");
        assert_eq!(back, Some(plain));
    }

    #[test]
    fn parses_rfc_3891_examples_and_refuses_broken_ones() {
        let r = Replaces::parse("425928@bobster.example.org;to-tag=7743;from-tag=6472").unwrap();
        assert_eq!(
            (r.call_id.as_str(), r.to_tag.as_str(), r.from_tag.as_str()),
            ("425928@bobster.example.org", "7743", "6472")
        );
        assert!(!r.early_only);
        assert!(
            Replaces::parse("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only").unwrap().early_only
        );
        for bad in [
            "",
            ";to-tag=1;from-tag=2",
            "id;to-tag=1",
            "id;from-tag=2",
            "a b;to-tag=1;from-tag=2",
            "id;to-tag=1;from-tag=2\r\nX: y",
        ] {
            assert_eq!(Replaces::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Replaces::parse(&"x".repeat(600)), None);
        assert_eq!(Replaces::from_uri("sip:a@b?Replaces=%ZZ").1, None);
        assert_eq!(Replaces::from_uri("sip:a@b?Replaces=%4").1, None);
        assert_eq!(Replaces::from_uri("sip:a@b?Subject=hi").0, "sip:a@b");
    }
}
