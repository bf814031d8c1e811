//! Combines result files: the median and min–max of every metric per system, berth's
//! ratio to each peer, the machine limits, and issue 3's targets.
//!
//! Inputs are the JSON reports of the other subcommands and zb's saved text output
//! (`<label>.r<round>.zb.txt`, see [`crate::zb`]).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use serde::Serialize;

use crate::cli::SummarizeArgs;
use crate::report::{Better, Report, format_value};
use crate::stats::median;
use crate::targets::{self, TargetRow};
use crate::zb;

/// Labels that are not registries.
const REFERENCE_LABELS: &[&str] = &["machine", "baseline"];

/// The figures shown first (the full table follows).
const HEADLINE: &[&str] = &[
    "push.monolithic.mib_s",
    "push.chunked.mib_s",
    "pull.gib_s",
    "manifest.tag.c1.rps",
    "manifest.tag.c64.rps",
    "manifest.tag.c64.p99_ms",
    "manifest.digest.c1.rps",
    "manifest.digest.c64.rps",
    "blob_head.c1.rps",
    "blob_head.c64.rps",
    "blob_head.c64.p99_ms",
    "tags.sequential.seconds",
    "tags.list_full.ms",
    "tags.list_page.ms",
    "mixed.seconds",
    "mixed.errors",
    "mixed.peak_rss_mib",
    "rss.peak_mib",
    "ready.ms",
    "ready.idle_rss_mib",
    "ready_seeded.ms",
];

/// The garbage-collection figures (`berth-bench gc`), in their own table when present.
const GC_HEADLINE: &[&str] = &[
    "gc.reclaim.blobs_deleted",
    "gc.reclaim.bytes_gb",
    "gc.reclaim.seconds",
    "gc.reclaim.blobs_per_s",
    "gc.reclaim.gb_s",
    "gc.reclaim.phase_manifests_s",
    "gc.reclaim.phase_links_s",
    "gc.reclaim.phase_blobs_s",
    "gc.push.no_gc.images_s",
    "gc.push.with_gc.images_s",
    "gc.push.no_gc.mib_s",
    "gc.push.with_gc.mib_s",
    "gc.push.with_gc_ratio",
    "gc.push.with_gc.reclaimed_fraction",
];

/// One metric of one system over its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Stat {
    fn new(values: Vec<f64>) -> Stat {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Stat { median: median(&values), min, max, values }
    }

    /// `median (min–max)`, or just the value for a single run.
    pub fn display(&self) -> String {
        if self.values.len() < 2 || self.min == self.max {
            return format_value(self.median);
        }
        format!("{} ({}–{})", format_value(self.median), format_value(self.min), format_value(self.max))
    }
}

/// One metric across systems.
#[derive(Debug, Clone, Serialize)]
pub struct MetricSummary {
    pub name: String,
    pub unit: String,
    pub better: Better,
    pub by_label: BTreeMap<String, Stat>,
}

/// Everything `summarize` computes.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Registries first (berth variants, then peers), then the reference labels.
    pub labels: Vec<String>,
    /// Round numbers seen per label.
    pub rounds: BTreeMap<String, BTreeSet<u32>>,
    pub metrics: Vec<MetricSummary>,
    pub notes: Vec<String>,
    /// zb's test names by their metric name component (`push_monolith_1mb` → `Push Monolith 1MB`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub zb_tests: BTreeMap<String, String>,
    pub targets: Vec<TargetRow>,
}

impl Summary {
    /// Groups reports by label and metric name (metrics keep their first-seen order).
    pub fn build(reports: &[Report]) -> Summary {
        let mut order: Vec<(String, String, Better)> = Vec::new();
        let mut values: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        let mut rounds: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut zb_tests = BTreeMap::new();
        for report in reports {
            rounds.entry(report.label.clone()).or_default().insert(report.round);
            let names = report.params.get(zb::TESTS_PARAM).and_then(|v| v.as_array());
            for name in names.into_iter().flatten().filter_map(|v| v.as_str()) {
                zb_tests.insert(zb::slug(name), name.to_owned());
            }
            notes.extend(report.notes.iter().map(|n| format!("{} round {}: {n}", report.label, report.round)));
            for m in &report.metrics {
                if !order.iter().any(|(n, _, _)| n == &m.name) {
                    order.push((m.name.clone(), m.unit.clone(), m.better));
                }
                values.entry((m.name.clone(), report.label.clone())).or_default().push(m.value);
            }
        }
        let metrics = order
            .into_iter()
            .map(|(name, unit, better)| {
                let by_label = values
                    .iter()
                    .filter(|((n, _), _)| n == &name)
                    .map(|((_, label), v)| (label.clone(), Stat::new(v.clone())))
                    .collect();
                MetricSummary { name, unit, better, by_label }
            })
            .collect();
        let mut summary =
            Summary { labels: order_labels(rounds.keys()), rounds, metrics, notes, zb_tests, targets: vec![] };
        summary.targets = targets::evaluate(&summary);
        summary
    }

    /// The median of `name` for `label`.
    pub fn median(&self, label: &str, name: &str) -> Option<f64> {
        self.metric(name)?.by_label.get(label).map(|s| s.median)
    }

    /// A metric by name.
    pub fn metric(&self, name: &str) -> Option<&MetricSummary> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Labels of the registries other than berth's.
    pub fn peers(&self) -> Vec<&str> {
        self.labels.iter().map(String::as_str).filter(|l| is_registry(l) && !is_berth(l)).collect()
    }

    /// Labels of berth's variants (`berth`, `berth-nofsync`, ...).
    fn berths(&self) -> Vec<&str> {
        self.labels.iter().map(String::as_str).filter(|l| is_berth(l)).collect()
    }

    /// The whole summary as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let registries: Vec<&str> = self.labels.iter().map(String::as_str).filter(|l| is_registry(l)).collect();
        let rounds: Vec<String> = self.rounds.iter().map(|(l, r)| format!("{l}: {}", r.len())).collect();
        out += &format!("Medians with min–max over rounds ({}).\n\n", rounds.join(", "));
        out += "### Headline figures\n\n";
        out += &self.table(&registries, |m| HEADLINE.contains(&m.name.as_str()) || m.name.starts_with("scale."));
        if self.metrics.iter().any(|m| GC_HEADLINE.contains(&m.name.as_str())) {
            out += "\n### Garbage collection\n\n";
            out += &self.table(&registries, |m| GC_HEADLINE.contains(&m.name.as_str()));
        }
        if self.metrics.iter().any(is_zb) {
            out += "\n### zb (zot's benchmark)\n\n";
            out += "Each test's requests/s cover its whole run, setup pushes and cleanup deletes included; \
                    latencies are per request.\n\n";
            let ran: Vec<&str> = registries
                .iter()
                .copied()
                .filter(|l| self.metrics.iter().any(|m| is_zb(m) && m.by_label.contains_key(*l)))
                .collect();
            out += &self.table(&ran, is_zb);
        }
        out += "\n### berth ÷ peer (oriented so that > 1 means berth is better)\n\n";
        out += &self.ratio_table(|m| HEADLINE.contains(&m.name.as_str()));
        out += "\n### Machine limits and the baseline server\n\n";
        out += &self.table(REFERENCE_LABELS, |m| REFERENCE_LABELS.iter().any(|l| m.by_label.contains_key(*l)));
        out += "\n### Issue 3 targets\n\n";
        out += &targets::markdown(&self.targets);
        out += "\n### Every figure\n\n";
        out += &self.table(&registries, |m| m.by_label.keys().any(|l| is_registry(l)));
        if !self.notes.is_empty() {
            out += "\n### Notes from the runs\n\n";
            for note in &self.notes {
                out += &format!("- {note}\n");
            }
        }
        out
    }

    fn table(&self, labels: &[&str], include: impl Fn(&MetricSummary) -> bool) -> String {
        let mut out = format!("| metric | unit | {} |\n", labels.join(" | "));
        out += &format!("|---|---|{}\n", "---:|".repeat(labels.len()));
        for m in self.metrics.iter().filter(|m| include(m)) {
            let cells: Vec<String> =
                labels.iter().map(|l| m.by_label.get(*l).map_or_else(|| "–".into(), Stat::display)).collect();
            out += &format!("| {} | {} | {} |\n", m.name, m.unit, cells.join(" | "));
        }
        out
    }

    fn ratio_table(&self, include: impl Fn(&MetricSummary) -> bool) -> String {
        let (berths, peers) = (self.berths(), self.peers());
        let columns: Vec<String> =
            berths.iter().flat_map(|b| peers.iter().map(move |p| format!("{b} vs {p}"))).collect();
        let mut out = format!("| metric | {} |\n|---|{}\n", columns.join(" | "), "---:|".repeat(columns.len()));
        for m in self.metrics.iter().filter(|m| m.better != Better::None && include(m)) {
            let cells: Vec<String> = berths
                .iter()
                .flat_map(|b| peers.iter().map(move |p| ratio(m, b, p)))
                .map(|r| r.map_or_else(|| "–".into(), |r| format!("{}×", format_value(r))))
                .collect();
            if cells.iter().any(|c| c != "–") {
                out += &format!("| {} | {} |\n", m.name, cells.join(" | "));
            }
        }
        out
    }
}

/// berth's median over the peer's, inverted for lower-is-better metrics.
pub fn ratio(m: &MetricSummary, berth: &str, peer: &str) -> Option<f64> {
    let (b, p) = (m.by_label.get(berth)?.median, m.by_label.get(peer)?.median);
    let r = match m.better {
        Better::Higher => b / p,
        Better::Lower => p / b,
        Better::None => return None,
    };
    r.is_finite().then_some(r)
}

fn is_zb(m: &MetricSummary) -> bool {
    m.name.starts_with(zb::PREFIX)
}

fn is_berth(label: &str) -> bool {
    label == "berth" || label.starts_with("berth-")
}

fn is_registry(label: &str) -> bool {
    !REFERENCE_LABELS.contains(&label)
}

fn order_labels<'a>(labels: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut labels: Vec<String> = labels.cloned().collect();
    labels.sort_by_key(|l| (!is_berth(l), !is_registry(l), l.clone()));
    labels
}

/// The `summarize` subcommand.
pub fn run(args: &SummarizeArgs) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for path in &args.inputs {
        if zb::is_output(path) {
            reports.push(zb::read(path)?);
            continue;
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        reports.push(serde_json::from_str::<Report>(&text).with_context(|| format!("parsing {}", path.display()))?);
    }
    let summary = Summary::build(&reports);
    let markdown = summary.markdown();
    print!("{markdown}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown)?;
    }
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    if args.strict && !summary.notes.is_empty() {
        anyhow::bail!("{} note(s) from the runs (--strict)", summary.notes.len());
    }
    Ok(())
}
