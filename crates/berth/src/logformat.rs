//! The text log format: tracing-subscriber's full format, made cheaper where
//! the access log (one line per request) spends its time.
//!
//! - Timestamps come from a per-thread cache of the formatted second: writing
//!   a date field by field cost more than the rest of an access line.
//! - Access lines (target [`ACCESS_TARGET`]) are written as they are, without
//!   the escaping every other event's fields get (which went character by
//!   character): the access log escapes client text itself, and only when it
//!   holds a control character (`berth_http::access_log::log`). Every other
//!   event keeps the full format, escaping included.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub use berth_http::access_log::TARGET as ACCESS_TARGET;

/// UTC timestamps as `2026-11-24T02:57:42.549085Z`, the format of
/// tracing-subscriber's default timer, with the second formatted once.
#[derive(Debug, Clone, Copy, Default)]
pub struct CachedUtc;

impl FormatTime for CachedUtc {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        thread_local! {
            /// The last second formatted on this thread, up to its seconds digits.
            static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        SECOND.with_borrow_mut(|(second, text)| {
            if *second != now.as_secs() {
                text.clear();
                write_second(text, now.as_secs())?;
                *second = now.as_secs();
            }
            write!(w, "{text}.{:06}Z", now.subsec_micros())
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second.
fn write_second(out: &mut String, unix_secs: u64) -> fmt::Result {
    let t = i64::try_from(unix_secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The text event format (see the module documentation).
pub struct TextFormat {
    full: Format<Full, CachedUtc>,
}

impl TextFormat {
    pub fn new() -> Self {
        TextFormat { full: Format::default().with_timer(CachedUtc).with_target(false) }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        // Inside a span the full format's span prefix is wanted.
        if event.metadata().target() != ACCESS_TARGET || ctx.lookup_current().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        let level = event.metadata().level();
        if writer.has_ansi_escapes() {
            writer.write_str("\x1b[2m")?;
            CachedUtc.format_time(&mut writer)?;
            write!(writer, "\x1b[0m \x1b[32m{level:>5}\x1b[0m ")?;
        } else {
            CachedUtc.format_time(&mut writer)?;
            write!(writer, " {level:>5} ")?;
        }
        let mut fields = Unescaped { writer: &mut writer, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writeln!(writer)
    }
}

/// Writes an access line's message as it is (other fields, which berth's
/// access lines do not have, as escaped `name=value` pairs).
struct Unescaped<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for Unescaped<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            write!(self.writer, "{value:?}")
        } else {
            write!(self.writer, " {}={:?}", field.name(), format!("{value:?}"))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format_like_the_default_timer() {
        let mut text = String::new();
        write_second(&mut text, 1_795_488_662).unwrap();
        assert_eq!(text, "2026-11-24T02:51:02");
        text.clear();
        write_second(&mut text, 0).unwrap();
        assert_eq!(text, "1970-01-01T00:00:00");
    }

    /// Formats events through a subscriber using [`TextFormat`] and returns the output.
    fn capture(emit: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .event_format(TextFormat::new())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn access_lines_are_written_as_they_are_and_others_escaped() {
        let out = capture(|| {
            tracing::info!(target: ACCESS_TARGET, "{} {} {}", "GET", "/v2/a/b/manifests/latest", 200);
            tracing::warn!(name = "evil\u{1b}[31m", "something else");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let (stamp, access) = lines[0].split_once(' ').unwrap();
        assert_eq!(stamp.len(), "2026-11-24T02:51:02.123456Z".len(), "{stamp}");
        assert!(stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.', "{stamp}");
        assert_eq!(access, " INFO GET /v2/a/b/manifests/latest 200");
        assert!(lines[1].contains(" WARN something else"), "{}", lines[1]);
        assert!(!lines[1].contains('\u{1b}'), "control characters outside access lines are escaped: {}", lines[1]);
    }
}
