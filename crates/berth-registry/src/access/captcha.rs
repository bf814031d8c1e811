//! Captchas for logins after repeated failures (API.md §6.4).
//!
//! A challenge is a few characters from an alphabet without look-alikes,
//! drawn as SVG strokes (never as text, so the answer is not in the markup)
//! with per-glyph jitter and noise lines. Only `sha256(id:answer)` and the
//! expiry are stored, in the shared `settings` table, so any node can check
//! an answer, and taking the row consumes it: every challenge is single use.

use std::fmt::Write as _;

use base64::Engine as _;
use berth_access::secret;

use super::{AccessService, AuthError};

/// Settings rows holding live challenges are named `captcha:<id>`.
const PREFIX: &str = "captcha:";
/// How long a challenge may be answered.
pub const CAPTCHA_TTL_SECS: i64 = 300;
/// Characters in an answer.
const LEN: usize = 6;
/// No O/0, I/1, S/5, Z/2, B/8, G/6, D: nothing a person could misread.
const ALPHABET: &[u8] = b"ACEFHKLMNPRTUVWXY3479";

/// A challenge as sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captcha {
    /// `c_…`, the handle the login presents with the answer.
    pub id: String,
    /// `data:image/svg+xml;base64,…`.
    pub image: String,
    pub expires_in: i64,
}

impl AccessService {
    /// Issues a new challenge, purging expired ones on the way.
    pub async fn new_captcha(&self) -> Result<Captcha, AuthError> {
        let answer = secret::random_string(ALPHABET, LEN);
        self.captcha_with_answer(&answer).await
    }

    /// Issues a challenge with a known answer (tests use it directly).
    pub(crate) async fn captcha_with_answer(&self, answer: &str) -> Result<Captcha, AuthError> {
        let now = berth_meta::now_unix();
        self.meta.purge_settings(PREFIX, now - CAPTCHA_TTL_SECS).await?;
        let id = secret::random_token("c_", 12);
        let expires_at = now + CAPTCHA_TTL_SECS;
        let value = format!("{}:{expires_at}", answer_hash(&id, answer));
        self.meta.put_setting(&format!("{PREFIX}{id}"), &value, None).await?;
        let svg = render_svg(answer);
        let image = format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg));
        Ok(Captcha { id, image, expires_in: CAPTCHA_TTL_SECS })
    }

    /// Consumes challenge `id` and tells whether `answer` solved it in time.
    /// A second call with the same id is always false.
    pub async fn solve_captcha(&self, id: &str, answer: &str) -> Result<bool, AuthError> {
        if !id.starts_with("c_") || id.len() > 64 {
            return Ok(false);
        }
        let Some(stored) = self.meta.take_setting(&format!("{PREFIX}{id}")).await? else { return Ok(false) };
        let Some((hash, expires_at)) = stored.split_once(':') else { return Ok(false) };
        let live = expires_at.parse::<i64>().is_ok_and(|at| at > berth_meta::now_unix());
        Ok(live && secret::constant_time_eq(answer_hash(id, answer).as_bytes(), hash.as_bytes()))
    }
}

/// The stored form of an answer: tied to its challenge, case and spaces ignored.
fn answer_hash(id: &str, answer: &str) -> String {
    let canonical: String = answer.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect();
    secret::hash_pat(&format!("{id}:{canonical}"))
}

// ---- drawing ----

/// Strokes of each glyph on a 4 × 6 grid (y grows downwards).
fn glyph(c: u8) -> &'static [&'static [(f32, f32)]] {
    match c {
        b'A' => &[&[(0., 6.), (2., 0.), (4., 6.)], &[(1., 3.5), (3., 3.5)]],
        b'C' => &[&[(4., 0.), (0., 0.), (0., 6.), (4., 6.)]],
        b'E' => &[&[(4., 0.), (0., 0.), (0., 6.), (4., 6.)], &[(0., 3.), (3., 3.)]],
        b'F' => &[&[(4., 0.), (0., 0.), (0., 6.)], &[(0., 3.), (3., 3.)]],
        b'H' => &[&[(0., 0.), (0., 6.)], &[(4., 0.), (4., 6.)], &[(0., 3.), (4., 3.)]],
        b'K' => &[&[(0., 0.), (0., 6.)], &[(4., 0.), (0., 3.5)], &[(1.2, 2.8), (4., 6.)]],
        b'L' => &[&[(0., 0.), (0., 6.), (4., 6.)]],
        b'M' => &[&[(0., 6.), (0., 0.), (2., 3.), (4., 0.), (4., 6.)]],
        b'N' => &[&[(0., 6.), (0., 0.), (4., 6.), (4., 0.)]],
        b'P' => &[&[(0., 6.), (0., 0.), (4., 0.), (4., 3.), (0., 3.)]],
        b'R' => &[&[(0., 6.), (0., 0.), (4., 0.), (4., 3.), (0., 3.)], &[(1.5, 3.), (4., 6.)]],
        b'T' => &[&[(0., 0.), (4., 0.)], &[(2., 0.), (2., 6.)]],
        b'U' => &[&[(0., 0.), (0., 6.), (4., 6.), (4., 0.)]],
        b'V' => &[&[(0., 0.), (2., 6.), (4., 0.)]],
        b'W' => &[&[(0., 0.), (1., 6.), (2., 2.), (3., 6.), (4., 0.)]],
        b'X' => &[&[(0., 0.), (4., 6.)], &[(4., 0.), (0., 6.)]],
        b'Y' => &[&[(0., 0.), (2., 3.), (4., 0.)], &[(2., 3.), (2., 6.)]],
        b'3' => &[&[(0., 0.), (4., 0.), (4., 6.), (0., 6.)], &[(1., 3.), (4., 3.)]],
        b'4' => &[&[(3., 6.), (3., 0.), (0., 4.), (4., 4.)]],
        b'7' => &[&[(0., 0.), (4., 0.), (1.5, 6.)]],
        b'9' => &[&[(4., 3.), (0., 3.), (0., 0.), (4., 0.), (4., 6.), (0., 6.)]],
        _ => &[],
    }
}

/// Random values in `[-1, 1]`, from the CSPRNG.
struct Jitter(std::vec::IntoIter<u8>);

impl Jitter {
    fn new() -> Self {
        Jitter(secret::random_bytes(256).into_iter())
    }

    fn next(&mut self) -> f32 {
        let byte = self.0.next().unwrap_or(128);
        f32::from(byte) / 127.5 - 1.0
    }
}

/// The answer as an SVG image: jittered, slanted strokes over noise lines.
fn render_svg(answer: &str) -> String {
    let (width, height) = (40 + 30 * answer.len() as i32, 60);
    let mut rng = Jitter::new();
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#f4f4f4"/>"##
    );
    for _ in 0..8 {
        let (x1, y1) = (rng.next().abs() * width as f32, rng.next().abs() * height as f32);
        let (x2, y2) = (rng.next().abs() * width as f32, rng.next().abs() * height as f32);
        let _ = write!(
            svg,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#999" stroke-width="1.2"/>"##
        );
    }
    for (i, c) in answer.bytes().enumerate() {
        let (scale, slant) = (6.0 + rng.next(), rng.next() * 0.3);
        let (ox, oy) = (22.0 + 30.0 * i as f32 + rng.next() * 3.0, 12.0 + rng.next() * 5.0);
        let mut d = String::new();
        for stroke in glyph(c) {
            for (j, (x, y)) in stroke.iter().enumerate() {
                let px = ox + (x + slant * (6.0 - y)) * scale;
                let py = oy + y * scale;
                let _ = write!(d, "{}{px:.1},{py:.1} ", if j == 0 { "M" } else { "L" });
            }
        }
        let _ = write!(
            svg,
            r##"<path d="{}" fill="none" stroke="#223" stroke-width="3" stroke-linecap="round" stroke-linejoin="round"/>"##,
            d.trim_end()
        );
    }
    for _ in 0..4 {
        let (x1, y1) = (rng.next().abs() * width as f32, rng.next().abs() * height as f32);
        let (x2, y2) = (rng.next().abs() * width as f32, rng.next().abs() * height as f32);
        let _ = write!(
            svg,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#667" stroke-width="1"/>"##
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_letter_has_strokes_and_the_answer_is_not_in_the_image() {
        assert!(ALPHABET.iter().all(|c| !glyph(*c).is_empty()));
        let svg = render_svg("KXR3W9");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<path").count(), 6);
        assert!(!svg.contains("KXR3W9") && !svg.contains("<text"));
    }

    #[test]
    fn answers_ignore_case_and_spaces_but_are_bound_to_their_id() {
        assert_eq!(answer_hash("c_1", "kxr 3w9"), answer_hash("c_1", "KXR3W9"));
        assert_ne!(answer_hash("c_1", "KXR3W9"), answer_hash("c_2", "KXR3W9"));
    }
}
