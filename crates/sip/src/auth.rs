//! HTTP Digest authentication as SIP uses it: RFC 2617 / RFC 7616 with the
//! SIP algorithm list of RFC 8760 (MD5, SHA-256 and their `-sess` forms),
//! `qop=auth` when the server offers it.
//!
//! Challenges are parsed here rather than with rsip's typed header, which
//! keeps only one `qop` value and no unknown algorithms; a challenge we cannot
//! use is skipped in favour of another (RFC 8760 lets a server offer several).

use md5::Md5;
use sha2::{Digest, Sha256};

/// Longest challenge header value we read.
const MAX_CHALLENGE_LEN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }

    fn strength(self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
        }
    }

    fn session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The peer's challenge cannot be used (not Digest, missing realm or nonce, unknown algorithm).
    #[error("unusable authentication challenge: {0}")]
    BadChallenge(String),
}

/// One `WWW-Authenticate` or `Proxy-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offers `qop=auth` (we then use it).
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired but the credentials were right; retry without counting a failure.
    pub stale: bool,
}

impl Challenge {
    /// Parses a header value such as
    /// `Digest realm="pbx", nonce="abc", algorithm=SHA-256, qop="auth,auth-int"`.
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let bad = |m: &str| AuthError::BadChallenge(m.to_owned());
        if value.len() > MAX_CHALLENGE_LEN {
            return Err(bad("challenge too long"));
        }
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).ok_or_else(|| bad("no parameters"))?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(bad(&format!("scheme {scheme:?} is not Digest")));
        }
        let (mut realm, mut nonce, mut opaque, mut algorithm, mut qop, mut stale) =
            (None, None, None, None, None, false);
        for (name, v) in params(rest).ok_or_else(|| bad("malformed parameters"))? {
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" => algorithm = Some(Algorithm::parse(&v).ok_or_else(|| bad(&format!("algorithm {v:?}")))?),
                "qop" => qop = Some(v),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        Ok(Challenge {
            realm: realm.ok_or_else(|| bad("no realm"))?,
            nonce: nonce.filter(|n| !n.is_empty()).ok_or_else(|| bad("no nonce"))?,
            opaque,
            algorithm: algorithm.unwrap_or(Algorithm::Md5),
            qop_auth: qop.is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth"))),
            stale,
        })
    }

    /// The strongest usable challenge among several header values.
    pub fn best<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Challenge, AuthError> {
        let mut last_err = AuthError::BadChallenge("no challenge".into());
        let mut best: Option<Challenge> = None;
        for v in values {
            match Challenge::parse(v) {
                Ok(c) if best.as_ref().is_none_or(|b| c.algorithm.strength() > b.algorithm.strength()) => {
                    best = Some(c)
                }
                Ok(_) => {}
                Err(e) => last_err = e,
            }
        }
        best.ok_or(last_err)
    }

    /// The strongest usable challenge of a 401 (`WWW-Authenticate`) or 407
    /// (`Proxy-Authenticate`) response, and whether it came from a proxy
    /// (the answer then goes in `Proxy-Authorization`).
    pub fn from_response(response: &rsip::Response) -> Result<(Challenge, bool), AuthError> {
        use rsip::prelude::UntypedHeader;
        let proxy = response.status_code.code() == 407;
        let values = response.headers.iter().filter_map(|h| match h {
            rsip::Header::WwwAuthenticate(v) if !proxy => Some(v.value()),
            rsip::Header::ProxyAuthenticate(v) if proxy => Some(v.value()),
            _ => None,
        });
        Challenge::best(values).map(|c| (c, proxy))
    }

    /// The `response` value (RFC 7616 §3.4.1).
    pub fn response(&self, username: &str, password: &str, method: &str, uri: &str, cnonce: &str, nc: u32) -> String {
        let a = self.algorithm;
        let mut ha1 = a.hash(&format!("{username}:{}:{password}", self.realm));
        if a.session() {
            ha1 = a.hash(&format!("{ha1}:{}:{cnonce}", self.nonce));
        }
        let ha2 = a.hash(&format!("{method}:{uri}"));
        if self.qop_auth {
            a.hash(&format!("{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            a.hash(&format!("{ha1}:{}:{ha2}", self.nonce))
        }
    }

    /// The full `Authorization` / `Proxy-Authorization` header value.
    pub fn authorization(
        &self,
        username: &str,
        password: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> String {
        let response = self.response(username, password, method, uri, cnonce, nc);
        let mut v = format!(
            "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={}",
            quote(username),
            quote(&self.realm),
            quote(&self.nonce),
            self.algorithm.name()
        );
        if self.qop_auth {
            v.push_str(&format!(", qop=auth, nc={nc:08x}, cnonce=\"{}\"", quote(cnonce)));
        }
        if let Some(o) = &self.opaque {
            v.push_str(&format!(", opaque=\"{}\"", quote(o)));
        }
        v
    }
}

/// Escapes a value for a quoted-string.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `name=value` pairs separated by commas; values bare or quoted (with `\` escapes).
fn params(mut s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if s.is_empty() {
            return Some(out);
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_owned();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(rest) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = rest.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => v.push(c),
                }
            }
            s = &rest[end? + 1..];
            value = v;
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_owned();
            s = &s[end..];
        }
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_md5_qop_auth_example() {
        let c = Challenge::parse(r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#).unwrap();
        assert!(c.qop_auth && c.algorithm == Algorithm::Md5);
        let r = c.response("Mufasa", "Circle Of Life", "GET", "/dir/index.html", "0a4f113b", 1);
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_and_md5_examples() {
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let header = |alg: &str| {
            format!(
                r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, nonce="{nonce}", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#
            )
        };
        let sha = Challenge::parse(&header("SHA-256")).unwrap();
        assert_eq!(
            sha.response("Mufasa", "Circle of Life", "GET", "/dir/index.html", cnonce, 1),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let md5 = Challenge::parse(&header("MD5")).unwrap();
        assert_eq!(
            md5.response("Mufasa", "Circle of Life", "GET", "/dir/index.html", cnonce, 1),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
        // RFC 8760: the strongest offered algorithm wins.
        let best = Challenge::best([header("MD5").as_str(), header("SHA-256").as_str()]).unwrap();
        assert_eq!(best.algorithm, Algorithm::Sha256);
    }

    #[test]
    fn authorization_header_carries_everything_the_server_needs() {
        let c = Challenge::parse(r#"Digest realm="pbx", nonce="n1", opaque="o\"1", qop="auth""#).unwrap();
        let v = c.authorization("alice", "pw", "REGISTER", "sip:pbx.example.com", "c1", 1);
        assert!(
            v.starts_with(r#"Digest username="alice", realm="pbx", nonce="n1", uri="sip:pbx.example.com", response=""#),
            "{v}"
        );
        assert!(v.ends_with(r#"algorithm=MD5, qop=auth, nc=00000001, cnonce="c1", opaque="o\"1""#), "{v}");
        // No qop offered: RFC 2069 form.
        let legacy = Challenge::parse(r#"Digest realm="pbx", nonce="n1""#).unwrap();
        assert!(!legacy.authorization("a", "p", "REGISTER", "sip:x", "c", 1).contains("qop"));
    }

    #[test]
    fn unusable_challenges_are_errors_not_panics() {
        for bad in [
            "",
            "Basic realm=\"x\"",
            "Digest",
            "Digest realm=\"x\"",
            "Digest nonce=\"n\"",
            "Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"unterminated, nonce=\"n\"",
            "Digest =,=,",
        ] {
            assert!(Challenge::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Challenge::parse(&format!("Digest realm=\"{}\", nonce=\"n\"", "x".repeat(5000))).is_err());
        let stale = Challenge::parse(r#"Digest realm="r", nonce="n2", stale=TRUE"#).unwrap();
        assert!(stale.stale);
    }
}
