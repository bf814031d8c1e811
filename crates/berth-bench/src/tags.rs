//! Tag creation and listing: sequential tag PUTs, and the latency of tags/list and _catalog.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use http::{Method, StatusCode};

use crate::client::{self, Target};
use crate::oci::{self, Image};
use crate::report::{Better, Report};
use crate::stats::Latency;

/// The name of tag number `i` (zero-padded, so lexical order is numeric order).
pub fn tag_name(i: u32) -> String {
    format!("t{i:06}")
}

/// Pushes `image` and then PUTs its manifest under `count` new tags, one after another.
pub async fn sequential(
    target: &Arc<Target>,
    report: &mut Report,
    repo: &str,
    image: &Image,
    count: u32,
) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    image.push(&mut conn, repo, "seed").await?;
    let started = Instant::now();
    for i in 0..count {
        oci::put_manifest(&mut conn, repo, &tag_name(i), &image.manifest).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    report.param("sequential_tags", count);
    report.add("tags.sequential.seconds", seconds, "s", Better::Lower);
    report.add("tags.sequential.per_s", f64::from(count) / seconds, "tags/s", Better::Higher);
    Ok(())
}

/// A listing to time: its metric name, request path, and the JSON array it returns.
pub struct Listing<'a> {
    pub name: &'a str,
    pub path: String,
    /// `tags` or `repositories`.
    pub field: &'a str,
    /// Entries the response should hold; a short answer is noted.
    pub expect: Option<usize>,
}

/// GETs the listing once untimed (checking its length), then `samples` times sequentially.
///
/// Records `{name}.ms` (the median) and `{name}.p99_ms`.
pub async fn time_listing(
    target: &Arc<Target>,
    report: &mut Report,
    listing: &Listing<'_>,
    samples: u32,
) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let get = |conn: &client::Conn| conn.request(Method::GET, &listing.path).body(client::empty());
    let first = conn.fetch(get(&conn)?).await?.expect(StatusCode::OK, &listing.path)?;
    let body: serde_json::Value = serde_json::from_slice(&first.body).with_context(|| listing.path.clone())?;
    let entries = body[listing.field].as_array().map_or(0, Vec::len);
    if let Some(expect) = listing.expect.filter(|&e| entries < e) {
        report.note(format!("{} returned {entries} entries, expected {expect}", listing.path));
    }
    let mut durations = Vec::with_capacity(samples as usize);
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        conn.fetch(get(&conn)?).await?.expect(StatusCode::OK, &listing.path)?;
        durations.push(started.elapsed());
    }
    let latency = Latency::from_durations(&durations);
    report.add(format!("{}.entries", listing.name), entries as f64, "", Better::None);
    report.add(format!("{}.ms", listing.name), latency.p50_ms, "ms", Better::Lower);
    report.add(format!("{}.p99_ms", listing.name), latency.p99_ms, "ms", Better::Lower);
    Ok(())
}

/// Times the full tags/list and its first `n=100` page after [`sequential`].
pub async fn time_tag_listings(
    target: &Arc<Target>,
    report: &mut Report,
    repo: &str,
    count: u32,
    samples: u32,
) -> anyhow::Result<()> {
    let full = Listing {
        name: "tags.list_full",
        path: format!("/v2/{repo}/tags/list"),
        field: "tags",
        expect: Some(count as usize),
    };
    time_listing(target, report, &full, samples).await?;
    let page = Listing {
        name: "tags.list_page",
        path: format!("/v2/{repo}/tags/list?n=100"),
        field: "tags",
        expect: Some(100.min(count as usize)),
    };
    time_listing(target, report, &page, samples).await
}
