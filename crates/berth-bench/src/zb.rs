//! zot's own benchmark, `zb`: scripts/bench.sh saves its text output as
//! `<label>.r<round>.zb.txt`, and `summarize` turns each file into a report with the
//! metrics `zb.<test>.rps`, `zb.<test>.p50_ms`, `zb.<test>.p99_ms` and `zb.<test>.failed`.
//!
//! zb prints one block per test (tab-aligned with spaces):
//!
//! ```text
//! ============
//! Test name:            Push Monolith 1MB
//! Time taken for tests: 139.578904ms
//! Complete requests:    20
//! Failed requests:      0
//! Requests per second:  143.28813
//! ...
//! p50: 68.100947ms
//! p99: 83.385144ms
//! ```
//!
//! Latencies are Go durations (`950µs`, `68.100947ms`, `2.119734304s`, `1m4.5s`). Each test's
//! requests per second cover its whole run, setup pushes and cleanup deletes included.

use std::path::Path;

use anyhow::Context;

use crate::report::{Better, Report};

/// The file name suffix of zb's saved output.
pub const SUFFIX: &str = ".zb.txt";

/// The metric name prefix.
pub const PREFIX: &str = "zb.";

/// The report parameter listing the test names in zb's order.
pub const TESTS_PARAM: &str = "zb_tests";

/// One test's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: f64,
}

/// The tests of zb's output, in its order; a block missing any of its figures is left out.
pub fn parse(text: &str) -> Vec<TestResult> {
    #[derive(Default)]
    struct Block {
        name: String,
        rps: Option<f64>,
        p50_ms: Option<f64>,
        p99_ms: Option<f64>,
        failed: Option<f64>,
    }
    fn finish(block: Option<Block>, out: &mut Vec<TestResult>) {
        let Some(b) = block else { return };
        if let (Some(rps), Some(p50_ms), Some(p99_ms), Some(failed)) = (b.rps, b.p50_ms, b.p99_ms, b.failed) {
            out.push(TestResult { name: b.name, rps, p50_ms, p99_ms, failed });
        }
    }
    let mut out = Vec::new();
    let mut block: Option<Block> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let (key, value) = (key.trim(), value.trim());
        if key == "Test name" {
            finish(block.take(), &mut out);
            block = Some(Block { name: value.to_owned(), ..Block::default() });
            continue;
        }
        let Some(b) = block.as_mut() else { continue };
        match key {
            "Requests per second" => b.rps = value.parse().ok(),
            "Failed requests" => b.failed = value.parse().ok(),
            "p50" => b.p50_ms = go_duration_ms(value),
            "p99" => b.p99_ms = go_duration_ms(value),
            _ => {}
        }
    }
    finish(block, &mut out);
    out
}

/// A Go `time.Duration` as printed by `%v` (`0s`, `950µs`, `68.1ms`, `2.1s`, `1h2m3.5s`), in ms.
pub fn go_duration_ms(s: &str) -> Option<f64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let ns_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * ns_per_unit;
    }
    let ms = total / 1e6;
    Some(if negative { -ms } else { ms })
}

/// A test name as a metric name component: `Pull 75% and Push 25% Mixed 1MB` →
/// `pull_75_and_push_25_mixed_1mb`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// Label and round from `<label>.r<round>.zb.txt`.
pub fn label_and_round(path: &Path) -> Option<(String, u32)> {
    let name = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    let (label, round) = name.rsplit_once(".r")?;
    Some((label.to_owned(), round.parse().ok()?))
}

/// Whether `path` is saved zb output (by its name).
pub fn is_output(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(SUFFIX))
}

/// zb's output as a report of the label and round its file name gives.
pub fn report(label: &str, round: u32, text: &str) -> Report {
    let mut report = Report::new(label, round, None);
    report.tool = "zb".into();
    let tests = parse(text);
    report.param(TESTS_PARAM, tests.iter().map(|t| t.name.clone()).collect::<Vec<_>>());
    if tests.is_empty() {
        let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(2)..].join(" / ");
        report.notes.push(format!("zb printed no complete test result (last lines: {tail})"));
    }
    for t in &tests {
        let prefix = format!("{PREFIX}{}", slug(&t.name));
        let metrics = [
            ("rps", t.rps, "req/s", Better::Higher),
            ("p50_ms", t.p50_ms, "ms", Better::Lower),
            ("p99_ms", t.p99_ms, "ms", Better::Lower),
            ("failed", t.failed, "", Better::Lower),
        ];
        for (name, value, unit, better) in metrics {
            report.metrics.push(crate::report::Metric {
                name: format!("{prefix}.{name}"),
                value,
                unit: unit.into(),
                better,
            });
        }
        if t.failed > 0.0 {
            report.notes.push(format!("zb: {} failed request(s) in {}", t.failed, t.name));
        }
    }
    report
}

/// Reads one saved zb output.
pub fn read(path: &Path) -> anyhow::Result<Report> {
    let (label, round) = label_and_round(path)
        .with_context(|| format!("{}: zb output must be named <label>.r<round>{SUFFIX}", path.display()))?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(report(&label, round, &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taken from zb v1.4.3 against berth (`-c 10 -n 20 -o stdout`), one block trimmed to a
    /// microsecond p50 and the last one cut short as when zb dies mid-output.
    const OUTPUT: &str = "Registry URL: http://127.0.0.1:5902

Concurrency Level: 10
Total requests:    20
Working dir:       /tmp/zt/zbwork

Preparing test data ...
Starting tests ...
============
Test name:            Get Catalog
Time taken for tests: 1.400725019s
Complete requests:    20
Failed requests:      0
Requests per second:  14.27832

1MB:   14
10MB:  3
100MB: 3

2xx responses: 20

min: 249.699\u{b5}s
max: 31.234295ms
p50: 950\u{b5}s
p75: 16.210437ms
p90: 31.06626ms
p99: 31.234295ms

============
Test name:            Push Monolith 1MB
Time taken for tests: 139.578904ms
Complete requests:    20
Failed requests:      0
Requests per second:  143.28813

2xx responses: 20

min: 54.306887ms
max: 83.385144ms
p50: 68.100947ms
p75: 72.014254ms
p90: 80.70953ms
p99: 83.385144ms

============
Test name:            Pull 75% and Push 25% Mixed 100MB
Time taken for tests: 9.163202289s
Complete requests:    18
Failed requests:      2
Requests per second:  2.1826432

Pull: 1
Push: 0

2xx responses: 18
5xx responses: 2

min: 402.1ms
max: 4.2s
p50: 2.119734304s
p75: 3.2s
p90: 3.9s
p99: 1m4.5s

============
Test name:            Pull 1MB
Time taken for tests: 82.410013ms
Complete requests:    20
Failed requests:      0
Requests per second:  242.68895
";

    #[test]
    fn parses_zb_output() {
        let tests = parse(OUTPUT);
        let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["Get Catalog", "Push Monolith 1MB", "Pull 75% and Push 25% Mixed 100MB"]);
        assert_eq!(tests[0].rps, 14.27832);
        assert!((tests[0].p50_ms - 0.95).abs() < 1e-9);
        assert!((tests[0].p99_ms - 31.234295).abs() < 1e-9);
        assert_eq!(tests[0].failed, 0.0);
        assert!((tests[1].p50_ms - 68.100947).abs() < 1e-9);
        assert_eq!(tests[2].failed, 2.0);
        assert!((tests[2].p50_ms - 2119.734304).abs() < 1e-6);
        assert!((tests[2].p99_ms - 64_500.0).abs() < 1e-6);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ms("0s"), Some(0.0));
        assert_eq!(go_duration_ms("500ns"), Some(0.0005));
        assert_eq!(go_duration_ms("950us"), Some(0.95));
        assert_eq!(go_duration_ms("1h1m"), Some(3_660_000.0));
        assert_eq!(go_duration_ms("-2s"), Some(-2000.0));
        assert_eq!(go_duration_ms(""), None);
        assert_eq!(go_duration_ms("12"), None);
        assert_eq!(go_duration_ms("3 s"), None);
    }

    #[test]
    fn names() {
        assert_eq!(slug("Pull 75% and Push 25% Mixed 1MB"), "pull_75_and_push_25_mixed_1mb");
        assert_eq!(slug("Pull Mixed 20% 1MB, 70% 10MB, 10% 100MB"), "pull_mixed_20_1mb_70_10mb_10_100mb");
        assert_eq!(
            label_and_round(Path::new("/x/distribution-2.8.2.r3.zb.txt")),
            Some(("distribution-2.8.2".into(), 3))
        );
        assert_eq!(label_and_round(Path::new("berth.r1.suite.json")), None);
    }

    #[test]
    fn report_metrics_and_notes() {
        let report = report("zot-1.4.3", 2, OUTPUT);
        assert_eq!(report.metrics.len(), 12);
        assert_eq!(report.metrics[0].name, "zb.get_catalog.rps");
        assert_eq!(report.metrics[0].better, Better::Higher);
        assert_eq!(report.metrics[5].name, "zb.push_monolith_1mb.p50_ms");
        assert_eq!(report.metrics[5].better, Better::Lower);
        assert_eq!(report.notes, ["zb: 2 failed request(s) in Pull 75% and Push 25% Mixed 100MB"]);
        assert!(!super::report("berth", 1, "panic: requests cannot be less than concurrency").notes.is_empty());
    }
}
