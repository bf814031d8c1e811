//! Property test: random sequences of pushes, tags, retags, deletes, indexes with
//! children, referrers, repository deletions and collector runs, checked against
//! a model after every run. Nothing reachable is ever deleted; with no grace
//! period everything unreachable is; a dry run lists exactly what the real run
//! then deletes. Runs on SQLite, and on PostgreSQL when
//! `BERTH_TEST_POSTGRES_URL` is set.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_core::{Algorithm, Digest, RepoName, Tag};
use berth_gc::{Collector, GcSettings, RunRequest, Trigger};
use berth_meta::{Metadata, NewManifest, SqliteMeta};
use berth_storage::{BlobStore, MemoryStore};
use bytes::Bytes;

const REPOS: [&str; 3] = ["p/a", "p/b", "q/c"];
const TAGS: [&str; 3] = ["t1", "t2", "sig"];
const BLOBS: usize = 10;
const SEEDS: u64 = 24;
const STEPS: usize = 60;

/// splitmix64: a reproducible sequence per seed without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Debug, Clone)]
struct ModelManifest {
    blobs: Vec<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

/// What the database should hold, per repository.
#[derive(Default)]
struct Model {
    manifests: BTreeMap<(String, Digest), ModelManifest>,
    tags: BTreeMap<(String, String), Digest>,
    /// Blobs pushed into a repository (links), referenced or not.
    links: BTreeSet<(String, Digest)>,
    counter: u64,
}

impl Model {
    /// Manifests a run may not delete, by the collector's rules.
    fn live(&self) -> BTreeSet<(String, Digest)> {
        let exists = |k: &(String, Digest)| self.manifests.contains_key(k);
        let mut live: BTreeSet<(String, Digest)> = BTreeSet::new();
        for ((repo, _), digest) in &self.tags {
            let key = (repo.clone(), digest.clone());
            // A tagged referrer holds its subject.
            if let Some(subject) = &self.manifests[&key].subject {
                live.insert((repo.clone(), subject.clone()));
            }
            live.insert(key);
        }
        live.retain(exists);
        loop {
            let mut grown = live.clone();
            for (key, m) in &self.manifests {
                if live.contains(key) {
                    grown.extend(m.children.iter().map(|c| (key.0.clone(), c.clone())));
                } else if let Some(subject) = &m.subject
                    && live.contains(&(key.0.clone(), subject.clone()))
                {
                    grown.insert(key.clone());
                }
            }
            grown.retain(exists);
            if grown == live {
                return live;
            }
            live = grown;
        }
    }

    /// Links that live manifests reference.
    fn live_links(&self, live: &BTreeSet<(String, Digest)>) -> BTreeSet<(String, Digest)> {
        live.iter().flat_map(|k| self.manifests[k].blobs.iter().map(|b| (k.0.clone(), b.clone()))).collect()
    }
}

fn blob(i: usize) -> (Digest, Bytes) {
    let bytes = Bytes::from(format!("blob number {i}").into_bytes());
    (Digest::sha256(&bytes), bytes)
}

async fn store_blob(store: &dyn BlobStore, digest: &Digest, bytes: Bytes) {
    let id = uuid_like(digest);
    let cursor = store.upload_create(&id).await.unwrap();
    let mut hasher = Algorithm::Sha256.hasher();
    let body = Box::pin(futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) }));
    let (_, cursor) = store.upload_append(&id, &cursor, 0, body, &mut hasher).await.unwrap();
    let sealed = store.upload_seal(&id, &cursor).await.unwrap();
    store.upload_commit(&id, &sealed, digest).await.unwrap();
}

fn uuid_like(digest: &Digest) -> String {
    format!("u{}", &digest.encoded()[..16])
}

struct World {
    meta: Arc<dyn Metadata>,
    store: Arc<MemoryStore>,
    model: Model,
    rng: Rng,
}

impl World {
    fn repo(&mut self) -> String {
        REPOS[self.rng.below(REPOS.len())].to_owned()
    }

    async fn push_manifest(&mut self, repo: &str, m: ModelManifest, tag: Option<&str>) {
        self.model.counter += 1;
        let payload = serde_json::json!({
            "n": self.model.counter,
            "blobs": m.blobs.iter().map(Digest::as_str).collect::<Vec<_>>(),
            "children": m.children.iter().map(Digest::as_str).collect::<Vec<_>>(),
            "subject": m.subject.as_ref().map(Digest::as_str),
        })
        .to_string()
        .into_bytes();
        let digest = Digest::sha256(&payload);
        let name: RepoName = repo.parse().unwrap();
        let new = NewManifest {
            digest: digest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            artifact_type: None,
            subject: m.subject.clone(),
            annotations_json: None,
            payload,
            blob_refs: m.blobs.clone(),
            manifest_refs: m.children.clone(),
            require_references: true,
            events: Vec::new(),
        };
        let tags: Vec<Tag> = tag.iter().map(|t| t.parse().unwrap()).collect();
        self.meta.put_manifest(&name, new, &tags).await.unwrap();
        self.model.manifests.insert((repo.to_owned(), digest.clone()), m);
        if let Some(t) = tag {
            self.model.tags.insert((repo.to_owned(), t.to_owned()), digest);
        }
    }

    fn manifests_in(&self, repo: &str, plain_only: bool) -> Vec<Digest> {
        self.model
            .manifests
            .iter()
            .filter(|((r, _), m)| r == repo && (!plain_only || (m.children.is_empty() && m.subject.is_none())))
            .map(|((_, d), _)| d.clone())
            .collect()
    }

    fn maybe_tag(&mut self) -> Option<&'static str> {
        if self.rng.chance(60) { Some(TAGS[self.rng.below(2)]) } else { None }
    }

    async fn step(&mut self) {
        let repo = self.repo();
        let name: RepoName = repo.parse().unwrap();
        match self.rng.below(9) {
            0 | 1 => {
                let mut blobs = BTreeSet::new();
                for _ in 0..1 + self.rng.below(3) {
                    let (digest, bytes) = blob(self.rng.below(BLOBS));
                    if !blobs.insert(digest.clone()) {
                        continue;
                    }
                    store_blob(self.store.as_ref(), &digest, bytes.clone()).await;
                    self.meta.link_blob(&name, &digest, bytes.len() as u64, &[]).await.unwrap();
                    self.model.links.insert((repo.clone(), digest));
                }
                let tag = self.maybe_tag();
                let m = ModelManifest { blobs: blobs.into_iter().collect(), children: Vec::new(), subject: None };
                self.push_manifest(&repo, m, tag).await;
            }
            2 => {
                // An index of one or two plain manifests.
                let candidates = self.manifests_in(&repo, true);
                if candidates.is_empty() {
                    return;
                }
                let mut children = BTreeSet::new();
                for _ in 0..1 + self.rng.below(2) {
                    children.insert(candidates[self.rng.below(candidates.len())].clone());
                }
                let tag = self.maybe_tag();
                let m = ModelManifest { blobs: Vec::new(), children: children.into_iter().collect(), subject: None };
                self.push_manifest(&repo, m, tag).await;
            }
            3 => {
                // A referrer (signature) of a plain manifest, tagged `sig` sometimes.
                let candidates = self.manifests_in(&repo, true);
                if candidates.is_empty() {
                    return;
                }
                let subject = candidates[self.rng.below(candidates.len())].clone();
                let (digest, bytes) = blob(self.rng.below(BLOBS));
                store_blob(self.store.as_ref(), &digest, bytes.clone()).await;
                self.meta.link_blob(&name, &digest, bytes.len() as u64, &[]).await.unwrap();
                self.model.links.insert((repo.clone(), digest.clone()));
                let tag = if self.rng.chance(30) { Some("sig") } else { None };
                let m = ModelManifest { blobs: vec![digest], children: Vec::new(), subject: Some(subject) };
                self.push_manifest(&repo, m, tag).await;
            }
            4 => {
                // Retag an existing manifest (push it again under another tag).
                let candidates = self.manifests_in(&repo, false);
                if candidates.is_empty() {
                    return;
                }
                let digest = candidates[self.rng.below(candidates.len())].clone();
                let tag = TAGS[self.rng.below(TAGS.len())];
                let payload =
                    self.meta.manifest_by_digest(&name, &digest, true).await.unwrap().unwrap().payload.unwrap();
                let m = self.model.manifests[&(repo.clone(), digest.clone())].clone();
                let new = NewManifest {
                    digest: digest.clone(),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    artifact_type: None,
                    subject: m.subject.clone(),
                    annotations_json: None,
                    payload,
                    blob_refs: m.blobs.clone(),
                    manifest_refs: m.children.clone(),
                    require_references: true,
                    events: Vec::new(),
                };
                self.meta.put_manifest(&name, new, &[tag.parse().unwrap()]).await.unwrap();
                self.model.tags.insert((repo, tag.to_owned()), digest);
            }
            5 => {
                let tag = TAGS[self.rng.below(TAGS.len())];
                let deleted = self.meta.delete_tag(&name, &tag.parse().unwrap(), &[]).await.unwrap();
                assert_eq!(deleted, self.model.tags.remove(&(repo, tag.to_owned())).is_some());
            }
            6 => {
                // Delete a manifest by digest (its tags go with it).
                let candidates = self.manifests_in(&repo, false);
                if candidates.is_empty() {
                    return;
                }
                let digest = candidates[self.rng.below(candidates.len())].clone();
                let parents: Vec<String> = self
                    .model
                    .manifests
                    .iter()
                    .filter(|((r, _), m)| r == &repo && m.children.contains(&digest))
                    .map(|((_, d), _)| d.to_string())
                    .collect();
                if !parents.is_empty() {
                    // A child of an index stays while the index does.
                    let refused = self.meta.delete_manifest(&name, &digest, &[]).await.unwrap_err();
                    assert!(matches!(refused, berth_meta::MetaError::ReferencedByIndex(ref d) if parents.contains(d)));
                    return;
                }
                assert!(self.meta.delete_manifest(&name, &digest, &[]).await.unwrap());
                self.model.manifests.remove(&(repo.clone(), digest.clone()));
                self.model.tags.retain(|(r, _), d| !(r == &repo && d == &digest));
            }
            7 if self.rng.chance(15) => {
                if self.meta.delete_repository(&repo, &[]).await.unwrap() {
                    self.model.manifests.retain(|(r, _), _| r != &repo);
                    self.model.tags.retain(|(r, _), _| r != &repo);
                    self.model.links.retain(|(r, _)| r != &repo);
                }
            }
            _ => {
                let grace = if self.rng.chance(50) { Duration::ZERO } else { Duration::from_secs(3600) };
                self.collect(grace).await;
            }
        }
    }

    /// Runs the collector (a dry run first, with no grace period) and checks the result.
    async fn collect(&mut self, grace: Duration) {
        let collector = Collector::new(
            self.meta.clone(),
            self.store.clone(),
            GcSettings { batch: 3, concurrency: 2, ..GcSettings::default() },
        );
        let request = |dry_run| RunRequest { trigger: Trigger::Cli, node: "test".into(), dry_run, grace: Some(grace) };
        let plan = if grace.is_zero() {
            Some(collector.run(&request(true), &|_, _| {}).await.unwrap().plan.unwrap())
        } else {
            None
        };
        let before = self.snapshot().await;
        let report = collector.run(&request(false), &|_, _| {}).await.unwrap();
        let after = self.snapshot().await;
        let live = self.model.live();
        let live_links = self.model.live_links(&live);
        // Nothing reachable went.
        for key in &live {
            assert!(after.0.contains(key), "reachable manifest {key:?} was deleted (grace {grace:?})");
        }
        if grace.is_zero() {
            // Everything unreachable went, and the dry run said exactly that.
            assert_eq!(after.0, live, "manifests after a run without grace");
            assert_eq!(after.1, live_links, "links after a run without grace");
            let plan = plan.unwrap();
            let gone: BTreeSet<_> = before.0.difference(&after.0).map(|(r, d)| (r.clone(), d.to_string())).collect();
            assert_eq!(plan.manifests, gone, "dry run manifests");
            let links_gone: BTreeSet<_> =
                before.1.difference(&after.1).map(|(r, d)| (r.clone(), d.to_string())).collect();
            assert_eq!(plan.links, links_gone, "dry run links");
            let blobs_gone: BTreeSet<String> = before.2.difference(&after.2).map(|d| d.to_string()).collect();
            let planned_blobs: BTreeSet<String> = plan.blobs.iter().map(|(d, _)| d.clone()).collect();
            assert_eq!(planned_blobs, blobs_gone, "dry run blobs");
            assert_eq!(report.counters.blobs_deleted as usize, blobs_gone.len());
        }
        // Blob rows and bytes are exactly the linked blobs.
        let linked: BTreeSet<Digest> = after.1.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(after.2, linked, "blob rows after a run");
        for i in 0..BLOBS {
            let (digest, bytes) = blob(i);
            let stored = self.store.stat(&digest).await.unwrap();
            let expected = linked.contains(&digest).then_some(bytes.len() as u64);
            // Bytes never pushed are absent either way.
            if stored.is_some() || expected.is_some() {
                assert_eq!(stored, expected, "bytes of {digest}");
            }
        }
        // Quota usage, kept by triggers through every change, matches a recount.
        let size: BTreeMap<Digest, i64> = (0..BLOBS).map(blob).map(|(d, b)| (d, b.len() as i64)).collect();
        for project in ["p", "q"] {
            let in_project = |repo: &str| repo.split('/').next() == Some(project);
            let links: Vec<&(String, Digest)> = after.1.iter().filter(|(r, _)| in_project(r)).collect();
            let logical: i64 = links.iter().map(|(_, d)| size[d]).sum();
            let distinct: BTreeSet<&Digest> = links.iter().map(|(_, d)| d).collect();
            let physical: i64 = distinct.iter().map(|d| size[*d]).sum();
            let tags = self.model.tags.keys().filter(|(r, _)| in_project(r)).count() as i64;
            let usage = self.meta.project_quota(project).await.unwrap().usage;
            assert_eq!((usage.logical_bytes, usage.physical_bytes, usage.tags), (logical, physical, tags), "{project}");
        }
        // The model follows the database: what went is gone for good.
        self.model.manifests.retain(|k, _| after.0.contains(k));
        self.model.links.retain(|k| after.1.contains(k));
    }

    /// Manifests, links and blob rows in the database.
    async fn snapshot(&self) -> (BTreeSet<(String, Digest)>, BTreeSet<(String, Digest)>, BTreeSet<Digest>) {
        let mut manifests = BTreeSet::new();
        let mut links = BTreeSet::new();
        let all_manifests: BTreeSet<(String, Digest)> = self.model.manifests.keys().cloned().collect();
        for repo in REPOS {
            let name: RepoName = repo.parse().unwrap();
            for (r, d) in all_manifests.iter().filter(|(r, _)| r == repo) {
                if self.meta.manifest_by_digest(&name, d, false).await.unwrap().is_some() {
                    manifests.insert((r.clone(), d.clone()));
                }
            }
            for i in 0..BLOBS {
                let (digest, _) = blob(i);
                if self.meta.blob_in_repo(&name, &digest).await.unwrap().is_some() {
                    links.insert((repo.to_owned(), digest));
                }
            }
        }
        let blobs = self.meta.list_blobs(None, 1000).await.unwrap().into_iter().map(|b| b.digest).collect();
        (manifests, links, blobs)
    }
}

async fn run_seeds(meta: Arc<dyn Metadata>, seeds: std::ops::Range<u64>) {
    for seed in seeds {
        eprintln!("seed {seed}");
        let store = Arc::new(MemoryStore::new());
        let mut world = World { meta: meta.clone(), store, model: Model::default(), rng: Rng(seed) };
        for n in 0..STEPS {
            world.step().await;
            let snap = world.snapshot().await;
            for key in world.model.manifests.keys() {
                assert!(snap.0.contains(key), "seed {seed} step {n}: {key:?} vanished");
            }
        }
        world.collect(Duration::ZERO).await;
        // Everything left is reachable: drop every tag and all of it goes.
        for ((repo, tag), _) in std::mem::take(&mut world.model.tags) {
            let name: RepoName = repo.parse().unwrap();
            world.meta.delete_tag(&name, &tag.parse().unwrap(), &[]).await.unwrap();
        }
        world.collect(Duration::ZERO).await;
        assert!(world.model.manifests.is_empty(), "seed {seed}: untagged manifests left");
        assert!(world.meta.list_blobs(None, 10).await.unwrap().is_empty(), "seed {seed}: blobs left");
        for repo in REPOS {
            world.meta.delete_repository(repo, &[]).await.unwrap();
        }
        world.collect(Duration::ZERO).await;
    }
}

#[tokio::test]
async fn sqlite_collects_exactly_the_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn Metadata> = Arc::new(SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap());
    run_seeds(meta, 0..SEEDS).await;
}

#[tokio::test]
async fn postgres_collects_exactly_the_unreachable() {
    let Some((meta, _)) = berth_meta::postgres::test_database().await else {
        eprintln!("BERTH_TEST_POSTGRES_URL not set; skipping");
        return;
    };
    run_seeds(Arc::new(meta), 100..100 + SEEDS / 4).await;
}
