//! Results: a flat list of named metrics, printed as they come and saved as JSON.
//!
//! Metric names are stable (`push.monolithic.mib_s`, `manifest.tag.c64.rps`, ...):
//! `summarize` groups the files of several rounds and systems by them.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::stats::Latency;

/// Which direction is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
    /// A count or setting recorded for context.
    None,
}

/// One measured value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub better: Better,
}

/// Everything one invocation measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    /// The system under test (`berth`, `distribution-2.8.2`, `machine`, `baseline`, ...).
    pub label: String,
    pub round: u32,
    pub target: Option<String>,
    pub started_unix: u64,
    /// Parameters of the run (sizes, concurrency), for the record.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub metrics: Vec<Metric>,
    /// Anything a reader should know (a step that failed, a listing that came back short).
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report.
    pub fn new(label: &str, round: u32, target: Option<&str>) -> Report {
        Report {
            tool: "berth-bench".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            label: label.into(),
            round,
            target: target.map(str::to_owned),
            started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            params: serde_json::Map::new(),
            metrics: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a run parameter.
    pub fn param(&mut self, key: &str, value: impl Serialize) {
        self.params.insert(key.into(), serde_json::to_value(value).unwrap_or_default());
    }

    /// Records a metric and prints it to stderr as progress.
    pub fn add(&mut self, name: impl Into<String>, value: f64, unit: &str, better: Better) {
        let metric = Metric { name: name.into(), value, unit: unit.into(), better };
        eprintln!("  {:<34} {:>12} {}", metric.name, format_value(value), unit);
        self.metrics.push(metric);
    }

    /// Records requests/s, latency percentiles and errors under `prefix`.
    pub fn add_rate(&mut self, prefix: &str, rps: f64, latency: &Latency, errors: u64) {
        self.add(format!("{prefix}.rps"), rps, "req/s", Better::Higher);
        self.add(format!("{prefix}.p50_ms"), latency.p50_ms, "ms", Better::Lower);
        self.add(format!("{prefix}.p95_ms"), latency.p95_ms, "ms", Better::Lower);
        self.add(format!("{prefix}.p99_ms"), latency.p99_ms, "ms", Better::Lower);
        self.add(format!("{prefix}.errors"), errors as f64, "", Better::Lower);
    }

    /// Records a note and prints it.
    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("  note: {note}");
        self.notes.push(note);
    }

    /// The final table, on stdout.
    pub fn print_table(&self) {
        println!("berth-bench {} — {} (round {})", self.version, self.label, self.round);
        if let Some(target) = &self.target {
            println!("target: {target}");
        }
        let width = self.metrics.iter().map(|m| m.name.len()).max().unwrap_or(6).max(6);
        println!("{:<width$}  {:>12}  unit", "metric", "value");
        for m in &self.metrics {
            println!("{:<width$}  {:>12}  {}", m.name, format_value(m.value), m.unit);
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }

    /// Prints the table and writes the JSON file when asked to.
    pub fn finish(&self, json: Option<&Path>) -> anyhow::Result<()> {
        self.print_table();
        if let Some(path) = json {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let text = serde_json::to_string_pretty(self)?;
            std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// Three significant figures or more, without exponent noise.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Bytes per second in MiB/s.
pub fn mib_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / seconds
}

/// Bytes per second in GiB/s.
pub fn gib_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1 << 30) as f64 / seconds
}
