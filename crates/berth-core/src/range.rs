//! `Range` (blob downloads) and `Content-Range` (chunked uploads) header parsing.

/// Why a range header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range header is malformed")]
    Malformed,
    #[error("range cannot be satisfied for a blob of {size} bytes")]
    Unsatisfiable { size: u64 },
}

/// An inclusive byte range resolved against a blob's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive last byte.
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses a `Range: bytes=…` request header against a blob of `size` bytes.
    ///
    /// Returns `Ok(None)` when the header asks for something berth answers with the
    /// whole body (another unit, or several ranges, which RFC 9110 lets a server
    /// ignore). A malformed `bytes=` value or a range past the end is an error (416).
    pub fn parse_request(header: &str, size: u64) -> Result<Option<ByteRange>, RangeError> {
        let header = header.trim();
        let Some(spec) = header.strip_prefix("bytes=") else {
            return if header.contains('=') { Ok(None) } else { Err(RangeError::Malformed) };
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let (first, last) = spec.trim().split_once('-').ok_or(RangeError::Malformed)?;
        let unsatisfiable = RangeError::Unsatisfiable { size };
        let range = match (first.trim(), last.trim()) {
            ("", "") => return Err(RangeError::Malformed),
            ("", suffix) => {
                let n = parse_u64(suffix)?;
                if n == 0 || size == 0 {
                    return Err(unsatisfiable);
                }
                ByteRange { start: size.saturating_sub(n), end: size - 1 }
            }
            (start, end) => {
                let start = parse_u64(start)?;
                let end = if end.is_empty() { u64::MAX } else { parse_u64(end)? };
                if end < start || start >= size {
                    return Err(unsatisfiable);
                }
                ByteRange { start, end: end.min(size - 1) }
            }
        };
        Ok(Some(range))
    }
}

fn parse_u64(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    s.parse().map_err(|_| RangeError::Malformed)
}

/// The `Content-Range` of an upload chunk: inclusive `start-end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
}

impl ContentRange {
    /// Parses `start-end` (the OCI form); tolerates a `bytes ` / `bytes=` prefix
    /// and a `/total` suffix that some clients add.
    pub fn parse(header: &str) -> Result<ContentRange, RangeError> {
        let s = header.trim();
        let s = s.strip_prefix("bytes=").or_else(|| s.strip_prefix("bytes ")).unwrap_or(s);
        let s = s.split_once('/').map_or(s, |(r, _)| r);
        let (start, end) = s.split_once('-').ok_or(RangeError::Malformed)?;
        let (start, end) = (parse_u64(start)?, parse_u64(end)?);
        if end < start {
            return Err(RangeError::Malformed);
        }
        Ok(ContentRange { start, end })
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(h: &str) -> Result<Option<(u64, u64)>, RangeError> {
        ByteRange::parse_request(h, 2048).map(|o| o.map(|r| (r.start, r.end)))
    }

    #[test]
    fn request_ranges() {
        assert_eq!(r("bytes=500-1499"), Ok(Some((500, 1499))));
        assert_eq!(r("bytes=500-"), Ok(Some((500, 2047))));
        assert_eq!(r("bytes=-500"), Ok(Some((1548, 2047))));
        assert_eq!(r("bytes=-5000"), Ok(Some((0, 2047))));
        assert_eq!(r("bytes=2000-5000"), Ok(Some((2000, 2047))));
        assert_eq!(r("bytes=0-0"), Ok(Some((0, 0))));
        assert_eq!(r("bytes=0-1,5-6"), Ok(None));
        assert_eq!(r("items=0-1"), Ok(None));
    }

    #[test]
    fn unsatisfiable_and_malformed() {
        let uns = Err(RangeError::Unsatisfiable { size: 2048 });
        assert_eq!(r("bytes=500-0"), uns);
        assert_eq!(r("bytes=5000-10000"), uns);
        assert_eq!(r("bytes=2048-"), uns);
        assert_eq!(r("bytes=-0"), uns);
        for bad in
            ["bytes=", "bytes=-", "bytes=a-b", "bytes=1", "garbage", "bytes=+1-2", "bytes=99999999999999999999999-"]
        {
            assert_eq!(r(bad), Err(RangeError::Malformed), "{bad}");
        }
        assert_eq!(ByteRange::parse_request("bytes=0-", 0), Err(RangeError::Unsatisfiable { size: 0 }));
    }

    #[test]
    fn content_ranges() {
        assert_eq!(ContentRange::parse("0-21"), Ok(ContentRange { start: 0, end: 21 }));
        assert_eq!(ContentRange::parse("bytes 22-41/42"), Ok(ContentRange { start: 22, end: 41 }));
        assert_eq!(ContentRange::parse("bytes=1-1"), Ok(ContentRange { start: 1, end: 1 }));
        for bad in ["", "5", "5-", "-5", "5-4", "a-b", "0-1-2"] {
            assert!(ContentRange::parse(bad).is_err(), "{bad}");
        }
    }
}
