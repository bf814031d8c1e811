//! Repository-name globs: `*` matches any run of characters, `/` included
//! (`team/*` covers `team/a/b`), `?` one character. Used by webhook filters
//! and tag immutability rules.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    glob_match(pattern.as_bytes(), text.as_bytes())
}

/// Iterative wildcard matching with backtracking to the last `*` (linear in
/// practice, never exponential).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_cross_slashes_and_backtracking_stays_linear() {
        assert!(matches("team/*", "team/a/b"));
        assert!(!matches("team/*", "teams/a"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*", ""));
        assert!(!matches("a*b*c", "aXXbYY"));
        let text = "a".repeat(200);
        assert!(!matches(&format!("{}b", "*a".repeat(50)), &text));
    }
}
