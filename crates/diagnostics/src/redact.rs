//! Removing secrets from text before it is stored anywhere.
//!
//! Two nets: patterns (credentials in `key=value` / JSON form, `Authorization`
//! header values, bearer tokens, passwords in URLs) and the exact passwords the
//! helper currently holds, registered with [`register_secret`]. Either alone
//! would miss cases the other catches.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

use regex::Regex;
use zeroize::Zeroizing;

/// What a removed secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Shorter secrets would redact ordinary words; they are still covered by the patterns.
const MIN_SECRET_LEN: usize = 4;

static SECRETS: RwLock<Vec<Zeroizing<String>>> = RwLock::new(Vec::new());

struct Patterns {
    auth_header: Regex,
    key_value: Regex,
    bearer: Regex,
    url_password: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    Patterns {
    // `Authorization: Digest username="a", response="…"` up to the end of the line.
    auth_header: Regex::new(r"(?i)\b((?:proxy-)?authorization)(\s*[:=]\s*)[^\r\n]*").expect("static regex"),
    // password=…, "password":"…", token: … (quoted or bare values).
    key_value: Regex::new(
        r#"(?i)("?\b(?:password|passwd|pwd|secret|token|access_token|refresh_token|api_?key|credentials?)"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}\]]+)"#,
    )
    .expect("static regex"),
    bearer: Regex::new(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+").expect("static regex"),
    // scheme://user:password@host and sip:user:password@host
    url_password: Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*:(?://)?[^\s:@/]+):[^\s@/]+@").expect("static regex"),
}
});

/// Remembers a secret so that it is cut out of every later log line and bundle.
pub fn register_secret(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !secrets.iter().any(|s| s.as_str() == secret) {
        secrets.push(Zeroizing::new(secret.to_owned()));
    }
}

/// Forgets a secret (after logout). Text already written stays redacted.
pub fn forget_secret(secret: &str) {
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    secrets.retain(|s| s.as_str() != secret);
}

/// `text` with every secret replaced by [`REDACTED`]; borrowed when nothing matched.
pub fn redact(text: &str) -> Cow<'_, str> {
    let p = &*PATTERNS;
    let mut out = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
    }
    out = replace(out, &p.auth_header, &format!("${{1}}${{2}}{REDACTED}"));
    out = replace(out, &p.key_value, &format!("${{1}}{REDACTED}"));
    out = replace(out, &p.bearer, &format!("${{1}} {REDACTED}"));
    out = replace(out, &p.url_password, &format!("${{1}}:{REDACTED}@"));
    out
}

fn replace<'a>(text: Cow<'a, str>, re: &Regex, with: &str) -> Cow<'a, str> {
    if !re.is_match(&text) {
        return text;
    }
    Cow::Owned(re.replace_all(&text, with).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_cut_to_the_end_of_line() {
        let t = "REGISTER sip:x SIP/2.0\r\nAuthorization: Digest username=\"alice\", response=\"9f8e\"\r\nCSeq: 2\r\n";
        let r = redact(t);
        assert!(!r.contains("9f8e") && r.contains("Authorization: <redacted>\r\nCSeq: 2"), "{r}");
        let r = redact("Proxy-Authorization: Digest response=abc");
        assert_eq!(r, "Proxy-Authorization: <redacted>");
    }

    #[test]
    fn key_values_json_bearer_and_urls() {
        assert_eq!(redact(r#"{"username":"a","password":"p\"w"}"#), r#"{"username":"a","password":<redacted>}"#);
        assert_eq!(redact("login password=hunter2 remember=true"), "login password=<redacted> remember=true");
        assert_eq!(redact("token: abc.def"), "token: <redacted>");
        assert_eq!(redact("Bearer eyJhbGciOi.x-y"), "Bearer <redacted>");
        assert_eq!(redact("sip:alice:s3cret@pbx.example.com"), "sip:alice:<redacted>@pbx.example.com");
        assert_eq!(redact("https://u:pw@host/path"), "https://u:<redacted>@host/path");
        assert!(matches!(redact("nothing to see at 12:30"), Cow::Borrowed(_)));
    }

    #[test]
    fn registered_secrets_are_cut_anywhere() {
        register_secret("Tr0ub4dor&3");
        assert_eq!(redact("oops Tr0ub4dor&3 leaked"), "oops <redacted> leaked");
        forget_secret("Tr0ub4dor&3");
        assert_eq!(redact("Tr0ub4dor&3"), "Tr0ub4dor&3");
        register_secret("abc");
        assert_eq!(redact("abc"), "abc", "too short to register");
    }
}
