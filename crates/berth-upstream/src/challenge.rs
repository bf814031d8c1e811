//! Parsing `WWW-Authenticate` challenges (RFC 9110 §11.6.1).
//!
//! One header may hold several challenges (`Bearer realm="…", Basic
//! realm="…"`) and quoted values may contain commas
//! (`scope="repository:a:pull,push"`), so this is a small tokenizer rather
//! than a split on `,`. It never fails: what it cannot read it skips.

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

/// One challenge: a lowercased scheme and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase), if present.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// What a 401 asks for, in the order we prefer to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthRequest {
    /// Fetch a token from `realm`.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    /// Send username and password.
    Basic,
}

/// Picks the challenge to answer from all `WWW-Authenticate` headers:
/// Bearer (it needs a realm) over Basic; `None` if neither is offered.
pub(crate) fn auth_request(headers: &HeaderMap) -> Option<AuthRequest> {
    let challenges: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_challenges)
        .collect();
    let bearer = challenges.iter().find(|c| c.scheme == "bearer").and_then(|c| {
        let realm = c.param("realm").filter(|realm| !realm.is_empty())?;
        Some(AuthRequest::Bearer {
            realm: realm.to_owned(),
            service: c.param("service").map(str::to_owned),
            scope: c.param("scope").filter(|scope| !scope.is_empty()).map(str::to_owned),
        })
    });
    bearer.or_else(|| challenges.iter().any(|c| c.scheme == "basic").then_some(AuthRequest::Basic))
}

/// Splits one header value into its challenges.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor { bytes: header.as_bytes(), pos: 0 };
    let mut challenges = Vec::new();
    loop {
        cursor.skip(|b| b == b',' || b.is_ascii_whitespace());
        let scheme = cursor.token();
        if scheme.is_empty() {
            // End of input, or a stray character no rule accepts: skip it.
            if cursor.pos >= cursor.bytes.len() {
                break;
            }
            cursor.pos += 1;
            continue;
        }
        let mut challenge = Challenge { scheme: scheme.to_ascii_lowercase(), params: Vec::new() };
        while let Some((name, value)) = cursor.param() {
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        challenges.push(challenge);
    }
    challenges
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip(&mut self, what: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&what) {
            self.pos += 1;
        }
    }

    /// An RFC 9110 `token` (may be empty).
    fn token(&mut self) -> String {
        let start = self.pos;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned()
    }

    /// `name = value` with an optional trailing comma. On anything else the
    /// cursor is left where it was: what follows starts the next challenge.
    fn param(&mut self) -> Option<(String, String)> {
        let start = self.pos;
        self.skip(|b| b == b',' || b.is_ascii_whitespace());
        let name = self.token();
        self.skip(|b| b == b' ' || b == b'\t');
        if name.is_empty() || self.peek() != Some(b'=') {
            self.pos = start;
            return None;
        }
        self.pos += 1;
        self.skip(|b| b == b' ' || b == b'\t');
        let value = if self.peek() == Some(b'"') { self.quoted() } else { self.token() };
        Some((name, value))
    }

    /// A quoted string with backslash escapes; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut value = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        value.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => value.push(b),
            }
        }
        String::from_utf8_lossy(&value).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn docker_hub_challenge() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].scheme, "bearer");
        assert_eq!(
            params(&parsed[0]),
            [
                ("realm", "https://auth.docker.io/token"),
                ("service", "registry.docker.io"),
                ("scope", "repository:library/nginx:pull")
            ]
        );
    }

    #[test]
    fn commas_inside_quotes_and_odd_spacing() {
        let parsed = parse_challenges(
            r#"BEARER  Realm = "http://a/t" , scope="repository:a:pull,push",error=insufficient_scope"#,
        );
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].scheme, "bearer");
        assert_eq!(
            params(&parsed[0]),
            [("realm", "http://a/t"), ("scope", "repository:a:pull,push"), ("error", "insufficient_scope")]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let parsed = parse_challenges(r#"Basic realm="r", charset="UTF-8", Bearer realm="t",service=s"#);
        assert_eq!(parsed.iter().map(|c| c.scheme.as_str()).collect::<Vec<_>>(), ["basic", "bearer"]);
        assert_eq!(params(&parsed[0]), [("realm", "r"), ("charset", "UTF-8")]);
        assert_eq!(params(&parsed[1]), [("realm", "t"), ("service", "s")]);
    }

    #[test]
    fn escapes_and_garbage_do_not_panic() {
        let parsed = parse_challenges(r#"Bearer realm="a\"b\\c""#);
        assert_eq!(parsed[0].param("realm"), Some(r#"a"b\c"#));
        for junk in ["", ",,,", "=", "Bearer =", "Bearer realm=\"unterminated", "\"x\" ,= Basic", "Negotiate abc=="] {
            let _ = parse_challenges(junk);
        }
        assert_eq!(parse_challenges("Basic")[0].scheme, "basic");
    }

    #[test]
    fn prefers_bearer_and_needs_a_realm() {
        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Basic realm="x""#));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="https://t",service="s""#));
        assert_eq!(
            auth_request(&headers),
            Some(AuthRequest::Bearer { realm: "https://t".into(), service: Some("s".into()), scope: None })
        );

        let mut headers = HeaderMap::new();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer service="s", Basic realm="x""#));
        assert_eq!(auth_request(&headers), Some(AuthRequest::Basic));
        assert_eq!(auth_request(&HeaderMap::new()), None);
    }
}
