//! Issue 3's performance targets, checked against the medians of a summary.
//!
//! Every comparison uses figures of the same run: berth's medians against the peers',
//! the machine limits' and the baseline server's medians from the same files.

use serde::Serialize;

use crate::report::format_value;
use crate::summarize::Summary;
use crate::zb;

/// One line of the targets table.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `met`, `NOT met` or `not measured`.
    pub verdict: String,
}

/// How a check came out: `None` when a figure it needs is missing.
type Check = Option<(bool, String)>;

/// Evaluates every target.
pub fn evaluate(s: &Summary) -> Vec<TargetRow> {
    let c = Ctx { s };
    let mut rows = Vec::new();
    let mut add = |what: &str, target: &str, checks: Vec<Check>| rows.push(row(what, target, checks));
    add(
        "monolithic push 1 GiB, durable",
        "≥ 0.85 × dd conv=fsync",
        vec![c.at_least(
            c.get("berth", "push.monolithic.mib_s"),
            c.get("machine", "machine.dd_fsync.mib_s"),
            0.85,
            "dd fsync",
        )],
    );
    let sha_mib = c.get("machine", "machine.sha256_openssl.gib_s").map(|g| g * 1024.0);
    let nofsync = c.get("berth-nofsync", "push.monolithic.mib_s");
    add(
        "monolithic push 1 GiB, fsync off",
        "≥ 0.8 × sha256 (1 core); ≥ 1.5 × fastest peer",
        vec![
            c.at_least(nofsync, sha_mib, 0.8, "openssl sha256"),
            c.vs_fastest_peer(nofsync, "push.monolithic.mib_s", 1.5),
        ],
    );
    let mut chunked = vec![c.at_least(
        c.get("berth", "push.chunked.mib_s"),
        c.get("berth", "push.monolithic.mib_s"),
        0.9,
        "monolithic",
    )];
    if nofsync.is_some() {
        chunked.push(c.at_least(c.get("berth-nofsync", "push.chunked.mib_s"), nofsync, 0.9, "monolithic, fsync off"));
    }
    // Context, not a check: the same ratio for the baseline server's upload sink, which
    // hashes and stores nothing, is what the requests themselves cost on this machine.
    if let (Some(sink_chunked), Some(sink_mono)) =
        (c.get("baseline", "push.chunked.mib_s"), c.get("baseline", "push.monolithic.mib_s"))
    {
        let ratio = format_value(sink_chunked / sink_mono);
        let (chunked_text, mono_text) = (format_value(sink_chunked), format_value(sink_mono));
        chunked.push(Some((true, format!("upload sink's own {ratio}× ({chunked_text} vs {mono_text}, no storage)"))));
    }
    add("chunked push 1 GiB, 16 MiB PATCHes", "within 10 % of monolithic", chunked);
    let pull = c.get("berth", "pull.gib_s");
    add(
        "blob pull 1 GiB, page-cached",
        "≥ 3 GiB/s; ≥ 1.5 × fastest peer",
        vec![c.at_least_value(pull, 3.0, "GiB/s"), c.vs_fastest_peer(pull, "pull.gib_s", 1.5)],
    );
    for (what, prefix) in [("manifest GET by tag", "manifest.tag"), ("blob HEAD", "blob_head")] {
        let n = c.widest(prefix);
        let rps_name = format!("{prefix}.c{n}.rps");
        let rps = c.get("berth", &rps_name);
        add(
            &format!("{what}, {n} connections"),
            "≥ 2 × fastest peer, ≥ 5 × distribution 2.8, ≥ 0.5 × hyper baseline; p99 ≤ 10 ms",
            vec![
                c.vs_fastest_peer(rps, &rps_name, 2.0),
                c.at_least(rps, c.dist28(&rps_name), 5.0, "distribution 2.8"),
                c.at_least(rps, c.get("baseline", &format!("baseline.c{n}.rps")), 0.5, "baseline"),
                c.at_most(c.get("berth", &format!("{prefix}.c{n}.p99_ms")), 10.0, "ms p99"),
            ],
        );
    }
    let per_s = "tags.sequential.per_s";
    add(
        "10,000 sequential tag PUTs",
        "≥ 5 × distribution 2.8",
        vec![c.at_least(c.get("berth", per_s), c.dist28(per_s), 5.0, "distribution 2.8 (tags/s)")],
    );
    let list_10k = c.get("berth", "scale.tags_list_small.ms").or_else(|| c.get("berth", "tags.list_full.ms"));
    add("tags/list of 10,000 tags", "≤ 3 ms", vec![c.at_most(list_10k, 3.0, "ms")]);
    add(
        "n=100 page of a 100k-tag repository",
        "≤ 5 ms",
        vec![c.at_most(
            c.worst("scale.tags_page_first.ms", "scale.tags_page_middle.ms"),
            5.0,
            "ms (worse of first and middle page)",
        )],
    );
    add(
        "n=100 page of a 100k-repository catalog",
        "≤ 5 ms",
        vec![c.at_most(
            c.worst("scale.catalog_page_first.ms", "scale.catalog_page_middle.ms"),
            5.0,
            "ms (worse of first and middle page)",
        )],
    );
    add(
        "32 × 64 MiB pushes + 64 pulls at once",
        "no errors; peak RSS ≤ 100 MiB",
        vec![
            c.at_most(c.get("berth", "mixed.errors"), 0.0, "errors"),
            c.at_most(c.get("berth", "mixed.peak_rss_mib"), 100.0, "MiB peak RSS"),
        ],
    );
    add(
        "idle RSS after start; time to ready",
        "≤ 15 MiB; ≤ 100 ms empty, ≤ 500 ms with 100k repositories",
        vec![
            c.at_most(c.get("berth", "ready.idle_rss_mib"), 15.0, "MiB idle"),
            c.at_most(c.get("berth", "ready.ms"), 100.0, "ms empty"),
            c.at_most(c.get("berth", "ready_seeded.ms"), 500.0, "ms with the seeded repositories"),
        ],
    );
    add("zb (all its tests)", "berth ahead of every peer on every line", c.zb());
    rows
}

struct Ctx<'a> {
    s: &'a Summary,
}

impl Ctx<'_> {
    fn get(&self, label: &str, name: &str) -> Option<f64> {
        self.s.median(label, name)
    }

    /// The median of distribution 2.8.x.
    fn dist28(&self, name: &str) -> Option<f64> {
        let label = self.s.peers().into_iter().find(|l| l.starts_with("distribution-2."))?;
        self.get(label, name)
    }

    /// The highest concurrency berth was measured at for `prefix.cN.rps`.
    fn widest(&self, prefix: &str) -> usize {
        self.s
            .metrics
            .iter()
            .filter_map(|m| m.name.strip_prefix(&format!("{prefix}.c"))?.strip_suffix(".rps")?.parse().ok())
            .max()
            .unwrap_or(64)
    }

    fn worst(&self, a: &str, b: &str) -> Option<f64> {
        match (self.get("berth", a), self.get("berth", b)) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        }
    }

    fn at_least(&self, value: Option<f64>, reference: Option<f64>, factor: f64, what: &str) -> Check {
        let (v, r) = (value?, reference?);
        Some((v >= factor * r, format!("{}× {what} ({} vs {})", format_value(v / r), format_value(v), format_value(r))))
    }

    fn at_most(&self, value: Option<f64>, limit: f64, unit: &str) -> Check {
        let v = value?;
        Some((v <= limit, format!("{} {unit}", format_value(v))))
    }

    fn at_least_value(&self, value: Option<f64>, floor: f64, unit: &str) -> Check {
        let v = value?;
        Some((v >= floor, format!("{} {unit}", format_value(v))))
    }

    /// zb: on every test, berth's median requests/s at least every peer's, and no failed
    /// request from berth in any round.
    fn zb(&self) -> Vec<Check> {
        let tests: Vec<&str> =
            self.s.metrics.iter().filter_map(|m| m.name.strip_prefix(zb::PREFIX)?.strip_suffix(".rps")).collect();
        let name = |slug: &str| self.s.zb_tests.get(slug).map_or(slug, String::as_str).to_owned();
        let peers_ran = tests.iter().any(|t| self.s.peers().iter().any(|p| self.get(p, &rps_of(t)).is_some()));
        if tests.is_empty() || !peers_ran {
            return vec![None];
        }
        // The tests where berth is behind (or has no result), and its lowest ratio where it is not.
        let mut behind = Vec::new();
        let mut lowest: Option<(f64, &str, &str)> = None;
        let mut total = 0;
        for &test in &tests {
            let Some((peer, best)) = self
                .s
                .peers()
                .into_iter()
                .filter_map(|l| Some((l, self.get(l, &rps_of(test))?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
            else {
                continue;
            };
            total += 1;
            match self.get("berth", &rps_of(test)) {
                Some(b) if b >= best => {
                    if lowest.is_none_or(|(r, _, _)| b / best < r) {
                        lowest = Some((b / best, test, peer));
                    }
                }
                Some(b) => {
                    behind.push(format!("{} ({} vs {} {peer} req/s)", name(test), format_value(b), format_value(best)))
                }
                None => behind.push(format!("{} (no result from berth)", name(test))),
            }
        }
        let rps = if behind.is_empty() {
            let text = lowest.map_or_else(String::new, |(r, test, peer)| {
                format!(" (lowest ratio {}× on {}, vs {peer})", format_value(r), name(test))
            });
            (true, format!("ahead on all {total} tests{text}"))
        } else {
            (false, format!("behind on {} of {total} tests: {}", behind.len(), behind.join(", ")))
        };
        let failed: Vec<String> = tests
            .iter()
            .filter_map(|t| {
                let worst = self.s.metric(&format!("{}{t}.failed", zb::PREFIX))?.by_label.get("berth")?.max;
                (worst > 0.0).then(|| format!("{} ({})", name(t), format_value(worst)))
            })
            .collect();
        let failures = if failed.is_empty() {
            (true, "berth: 0 failed requests".to_owned())
        } else {
            (false, format!("berth failed requests in {} (worst round)", failed.join(", ")))
        };
        vec![Some(rps), Some(failures)]
    }

    /// `value` against the best peer median of `name` (higher is better).
    fn vs_fastest_peer(&self, value: Option<f64>, name: &str, factor: f64) -> Check {
        let (label, best) = self
            .s
            .peers()
            .into_iter()
            .filter_map(|l| Some((l, self.get(l, name)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let v = value?;
        Some((
            v >= factor * best,
            format!("{}× fastest peer {label} ({} vs {})", format_value(v / best), format_value(v), format_value(best)),
        ))
    }
}

/// The requests/s metric of a zb test.
fn rps_of(test: &str) -> String {
    format!("{}{test}.rps", zb::PREFIX)
}

fn row(what: &str, target: &str, checks: Vec<Check>) -> TargetRow {
    let measured: Vec<String> =
        checks.iter().map(|c| c.as_ref().map_or_else(|| "not measured".into(), |(_, t)| t.clone())).collect();
    let verdict = if checks.iter().any(|c| matches!(c, Some((false, _)))) {
        "NOT met"
    } else if checks.iter().any(Option::is_none) {
        "not measured"
    } else {
        "met"
    };
    TargetRow { what: what.into(), target: target.into(), measured: measured.join("; "), verdict: verdict.into() }
}

/// The targets as a Markdown table.
pub fn markdown(rows: &[TargetRow]) -> String {
    let mut out = String::from("| what | target | measured (medians) | verdict |\n|---|---|---|---|\n");
    for r in rows {
        out += &format!("| {} | {} | {} | {} |\n", r.what, r.target, r.measured, r.verdict);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::report::{Better, Report};
    use crate::summarize::Summary;
    use crate::zb;

    fn zb_output(tests: &[(&str, f64, u32)]) -> String {
        tests
            .iter()
            .map(|(name, rps, failed)| {
                format!(
                    "============\nTest name:\t{name}\nFailed requests:\t{failed}\nRequests per second:\t{rps}\n\
                     p50:\t5ms\np99:\t1.5s\n"
                )
            })
            .collect()
    }

    fn zb_row(reports: &[crate::report::Report]) -> super::TargetRow {
        let summary = Summary::build(reports);
        summary.targets.into_iter().find(|r| r.what == "zb (all its tests)").expect("zb row")
    }

    #[test]
    fn zb_target() {
        let peer = || zb::report("zot-1.4.3", 1, &zb_output(&[("Pull 1MB", 100.0, 0), ("Push Monolith 1MB", 50.0, 0)]));
        let ahead = zb::report("berth", 1, &zb_output(&[("Pull 1MB", 150.0, 0), ("Push Monolith 1MB", 60.0, 0)]));
        let row = zb_row(&[ahead, peer()]);
        assert_eq!(row.verdict, "met");
        assert_eq!(
            row.measured,
            "ahead on all 2 tests (lowest ratio 1.20× on Push Monolith 1MB, vs zot-1.4.3); berth: 0 failed requests"
        );

        let behind = zb::report("berth", 1, &zb_output(&[("Pull 1MB", 90.0, 1), ("Push Monolith 1MB", 60.0, 0)]));
        let row = zb_row(&[behind, peer()]);
        assert_eq!(row.verdict, "NOT met");
        assert_eq!(
            row.measured,
            "behind on 1 of 2 tests: Pull 1MB (90 vs 100 zot-1.4.3 req/s); \
             berth failed requests in Pull 1MB (1) (worst round)"
        );

        assert_eq!(zb_row(&[peer()]).verdict, "NOT met");
        assert_eq!(zb_row(&[]).verdict, "not measured");
    }

    fn pushes(label: &str, monolithic: f64, chunked: f64) -> Report {
        let mut report = Report::new(label, 1, None);
        report.add("push.monolithic.mib_s", monolithic, "MiB/s", Better::Higher);
        report.add("push.chunked.mib_s", chunked, "MiB/s", Better::Higher);
        report
    }

    fn chunked_row(reports: &[Report]) -> super::TargetRow {
        let summary = Summary::build(reports);
        summary.targets.into_iter().find(|r| r.what.starts_with("chunked push")).expect("chunked row")
    }

    #[test]
    fn chunked_target_shows_the_upload_sink_without_judging_it() {
        let row = chunked_row(&[pushes("berth", 1000.0, 950.0), pushes("baseline", 1600.0, 1200.0)]);
        assert_eq!(row.verdict, "met", "the sink's own ratio is context, not a check");
        assert_eq!(
            row.measured,
            "0.950× monolithic (950 vs 1000); upload sink's own 0.750× (1200 vs 1600, no storage)"
        );

        let row = chunked_row(&[pushes("berth", 1000.0, 850.0)]);
        assert_eq!(row.verdict, "NOT met");
        assert_eq!(row.measured, "0.850× monolithic (850 vs 1000)");
    }
}
