//! Retention: what a project's policy deletes, and deleting it.
//!
//! In every repository of the project that at least one rule's glob matches, a
//! tag stays when any matching rule keeps it (newest `keep_last` by push time,
//! name matching `keep_tags`, a semantic version within `keep_semver`, or
//! pulled or pushed within `keep_pulled_within_days`); the others are deleted,
//! except those a tag-immutability rule protects. With `untagged_hours` set,
//! manifests older than that which no tag points at (once the run's tag
//! deletions are done), no index lists as a child and that are not referrers of
//! a present subject are deleted too, in every repository of the project.
//!
//! A run first computes the whole plan from the database's indexes and then,
//! unless it is a dry run, deletes that plan (less what changed meanwhile) through
//! [`Registry::delete_manifest`], so events, webhooks and immutability apply as
//! for any delete: a dry run lists what the real run deletes. Blobs are left to
//! garbage collection.

use std::collections::{HashMap, HashSet};

use berth_core::{Reference, RepoName};
use berth_meta::{EventActor, RetentionPolicy, RetentionRule, RetentionTag};
use serde::Serialize;

use crate::{Registry, RegistryError};

/// The most rules a policy may have.
pub const MAX_RULES: usize = 64;
/// The longest `keep_last`, `keep_pulled_within_days` and `untagged_hours` accepted.
const MAX_COUNT: i64 = 1_000_000;
/// The longest semantic-version range accepted.
const MAX_RANGE_LEN: usize = 256;

/// A tag a run deleted (or would delete, or left alone because it is immutable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagItem {
    pub repository: String,
    pub tag: String,
    pub digest: String,
}

/// An untagged manifest a run deleted (or would delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestItem {
    pub repository: String,
    pub digest: String,
}

/// What a run deleted, or with `dry_run` what it would delete.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub deleted_tags: Vec<TagItem>,
    pub deleted_manifests: Vec<ManifestItem>,
    /// Tags the rules do not keep but a tag-immutability rule protects.
    pub protected: Vec<TagItem>,
}

impl RetentionReport {
    /// The audit entry of a real run by `actor`.
    pub fn audit_draft(&self, actor: &crate::access::Actor, project: &str) -> berth_meta::AuditDraft {
        let mut d = actor.draft("retention_run", "project.retention.run", &format!("project:{project}"));
        d.detail["deleted_tags"] = self.deleted_tags.len().into();
        d.detail["deleted_manifests"] = self.deleted_manifests.len().into();
        d.detail["protected"] = self.protected.len().into();
        d
    }
}

/// A rule ready to evaluate.
#[derive(Debug)]
struct Compiled {
    glob: String,
    keep_last: Option<usize>,
    keep_tags: Option<regex::Regex>,
    keep_semver: Option<semver::VersionReq>,
    keep_pulled_within_secs: Option<i64>,
}

impl Compiled {
    fn new(rule: &RetentionRule) -> Result<Self, String> {
        let keep_tags = rule
            .keep_tags
            .as_deref()
            .map(|p| berth_meta::immutability::compile(p).map_err(|e| format!("keep_tags {p:?}: {e}")))
            .transpose()?;
        let keep_semver = rule.keep_semver.as_deref().map(parse_range).transpose()?;
        Ok(Compiled {
            glob: rule.repository.clone(),
            keep_last: rule.keep_last.map(|n| usize::try_from(n).unwrap_or(0)),
            keep_tags,
            keep_semver,
            keep_pulled_within_secs: rule.keep_pulled_within_days.map(|d| d.saturating_mul(86_400)),
        })
    }

    /// Whether this rule keeps `tag`, the `position`-th newest of its repository.
    fn keeps(&self, tag: &RetentionTag, position: usize, now: i64) -> bool {
        self.keep_last.is_some_and(|n| position < n)
            || self.keep_tags.as_ref().is_some_and(|r| r.is_match(&tag.name))
            || self.keep_semver.as_ref().is_some_and(|range| semver_of(&tag.name).is_some_and(|v| range.matches(&v)))
            || self.keep_pulled_within_secs.is_some_and(|window| {
                let last_used = tag.pushed_at.max(tag.last_pulled_at.unwrap_or(i64::MIN));
                last_used >= now.saturating_sub(window)
            })
    }
}

fn parse_range(range: &str) -> Result<semver::VersionReq, String> {
    if range.trim().is_empty() || range.len() > MAX_RANGE_LEN {
        return Err(format!("keep_semver has 1 to {MAX_RANGE_LEN} characters"));
    }
    semver::VersionReq::parse(range).map_err(|e| format!("keep_semver {range:?}: {e}"))
}

/// The semantic version a tag names (`1.2.3`, `v1.2.3-rc.1`), if it names one.
fn semver_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// Checks a policy before it is stored: every glob lies inside the project,
/// every rule keeps something, patterns and ranges compile, counts are sane.
pub fn validate(policy: &RetentionPolicy) -> Result<(), String> {
    if policy.rules.len() > MAX_RULES {
        return Err(format!("at most {MAX_RULES} rules per project"));
    }
    if let Some(h) = policy.untagged_hours {
        check_count("untagged_hours", h)?;
    }
    policy.rules.iter().try_for_each(|rule| validate_rule(&policy.project, rule))
}

fn validate_rule(project: &str, rule: &RetentionRule) -> Result<(), String> {
    let glob = &rule.repository;
    let glob_ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*?".contains(c);
    if !glob.starts_with(&format!("{project}/")) || glob.len() > 255 || !glob.chars().all(glob_ok) {
        return Err(format!("repository {glob:?} must be a glob of repositories in {project} (like {project}/*)"));
    }
    if rule.keep_last.is_none()
        && rule.keep_tags.is_none()
        && rule.keep_semver.is_none()
        && rule.keep_pulled_within_days.is_none()
    {
        return Err(format!(
            "the rule for {glob:?} keeps nothing: set keep_last, keep_tags, keep_semver or keep_pulled_within_days"
        ));
    }
    if let Some(n) = rule.keep_last {
        check_count("keep_last", n)?;
    }
    if let Some(d) = rule.keep_pulled_within_days {
        check_count("keep_pulled_within_days", d)?;
    }
    Compiled::new(rule).map(|_| ())
}

fn check_count(name: &str, n: i64) -> Result<(), String> {
    if (1..=MAX_COUNT).contains(&n) { Ok(()) } else { Err(format!("{name} must be from 1 to {MAX_COUNT}")) }
}

/// Which of `tags` (newest first) the rules that match their repository keep.
fn kept(rules: &[&Compiled], tags: &[RetentionTag], now: i64) -> Vec<bool> {
    tags.iter().enumerate().map(|(i, tag)| rules.iter().any(|rule| rule.keeps(tag, i, now))).collect()
}

/// The whole policy, compiled, with the project's immutability rules.
struct Plan<'p> {
    policy: &'p RetentionPolicy,
    rules: Vec<Compiled>,
    immutable: Vec<(String, String)>,
    now: i64,
}

impl Registry {
    /// Evaluates `project`'s retention policy at `now` (unix seconds) and, unless
    /// `dry_run`, deletes what it does not keep as `actor`. A project without a
    /// policy keeps everything. The report of a real run lists what it deleted.
    pub async fn run_retention(
        &self,
        project: &str,
        dry_run: bool,
        now: i64,
        actor: &EventActor,
    ) -> Result<RetentionReport, RegistryError> {
        if !self.config.deletes_enabled {
            return Err(RegistryError::DeletesDisabled);
        }
        let Some(policy) = self.meta.retention_policy(project).await? else {
            return Ok(RetentionReport { dry_run, ..Default::default() });
        };
        let rules = policy.rules.iter().map(Compiled::new).collect::<Result<Vec<_>, _>>();
        let rules = rules.map_err(|e| RegistryError::Internal(format!("stored retention rule: {e}")))?;
        let immutable =
            self.meta.immutability_rules(project).await?.into_iter().map(|r| (r.repository, r.pattern)).collect();
        let plan = Plan { policy: &policy, rules, immutable, now };
        let mut report = RetentionReport { dry_run, ..Default::default() };
        for name in self.meta.project_repositories(project).await? {
            let Ok(repo) = name.parse::<RepoName>() else {
                continue;
            };
            self.plan_repository(&plan, &repo, &mut report).await?;
        }
        if dry_run { Ok(report) } else { self.apply_retention(report, actor).await }
    }

    /// Adds what the policy deletes in `repo` to `report`.
    async fn plan_repository(
        &self,
        plan: &Plan<'_>,
        repo: &RepoName,
        report: &mut RetentionReport,
    ) -> Result<(), RegistryError> {
        let matching: Vec<&Compiled> =
            plan.rules.iter().filter(|r| berth_core::glob::matches(&r.glob, repo.as_str())).collect();
        if matching.is_empty() && plan.policy.untagged_hours.is_none() {
            return Ok(());
        }
        let tags = self.meta.retention_tags(repo).await?;
        let keep = if matching.is_empty() { vec![true; tags.len()] } else { kept(&matching, &tags, plan.now) };
        let mut tagged: HashSet<&str> = HashSet::new();
        for (tag, keep) in tags.iter().zip(keep) {
            let item = || TagItem { repository: repo.to_string(), tag: tag.name.clone(), digest: tag.digest.clone() };
            if keep {
                tagged.insert(tag.digest.as_str());
            } else if berth_meta::immutability::protected(&plan.immutable, repo.as_str(), [tag.name.as_str()]).is_some()
            {
                tagged.insert(tag.digest.as_str());
                report.protected.push(item());
            } else {
                report.deleted_tags.push(item());
            }
        }
        if let Some(hours) = plan.policy.untagged_hours {
            let before = plan.now.saturating_sub(hours.saturating_mul(3600));
            for digest in self.meta.retention_manifests(repo, before).await? {
                if !tagged.contains(digest.as_str()) {
                    report.deleted_manifests.push(ManifestItem { repository: repo.to_string(), digest });
                }
            }
        }
        Ok(())
    }

    /// Deletes the plan of a dry run, repository by repository: tags first,
    /// then manifests. Each repository's tags are read again just before, and
    /// what changed since the plan is left alone: a tag pushed to another
    /// manifest, a manifest tagged again, anything already gone. A tag that
    /// became immutable meanwhile moves to `protected`.
    async fn apply_retention(
        &self,
        plan: RetentionReport,
        actor: &EventActor,
    ) -> Result<RetentionReport, RegistryError> {
        let mut done = RetentionReport { dry_run: false, protected: plan.protected, ..Default::default() };
        let mut repos: Vec<&str> = plan.deleted_tags.iter().map(|t| t.repository.as_str()).collect();
        repos.extend(plan.deleted_manifests.iter().map(|m| m.repository.as_str()));
        repos.sort_unstable();
        repos.dedup();
        for name in repos {
            let repo: RepoName = name.parse().map_err(|_| bad_row(name))?;
            let tags = plan.deleted_tags.iter().filter(|t| t.repository == name);
            self.apply_tag_deletes(&repo, tags, actor, &mut done).await?;
            let manifests = plan.deleted_manifests.iter().filter(|m| m.repository == name);
            self.apply_manifest_deletes(&repo, manifests, actor, &mut done).await?;
        }
        Ok(done)
    }

    async fn apply_tag_deletes(
        &self,
        repo: &RepoName,
        items: impl Iterator<Item = &TagItem>,
        actor: &EventActor,
        done: &mut RetentionReport,
    ) -> Result<(), RegistryError> {
        let current: HashMap<String, String> =
            self.meta.retention_tags(repo).await?.into_iter().map(|t| (t.name, t.digest)).collect();
        for item in items.filter(|i| current.get(&i.tag) == Some(&i.digest)) {
            let reference = item.tag.parse().map(Reference::Tag).map_err(|_| bad_row(&item.tag))?;
            match self.delete_planned(repo, &reference, actor).await? {
                Outcome::Deleted => done.deleted_tags.push(item.clone()),
                Outcome::Immutable => done.protected.push(item.clone()),
                Outcome::Gone => {}
            }
        }
        Ok(())
    }

    async fn apply_manifest_deletes(
        &self,
        repo: &RepoName,
        items: impl Iterator<Item = &ManifestItem>,
        actor: &EventActor,
        done: &mut RetentionReport,
    ) -> Result<(), RegistryError> {
        let tagged: HashSet<String> = self.meta.retention_tags(repo).await?.into_iter().map(|t| t.digest).collect();
        for item in items.filter(|i| !tagged.contains(&i.digest)) {
            let reference = item.digest.parse().map(Reference::Digest).map_err(|_| bad_row(&item.digest))?;
            if let Outcome::Deleted = self.delete_planned(repo, &reference, actor).await? {
                done.deleted_manifests.push(item.clone());
            }
        }
        Ok(())
    }

    async fn delete_planned(
        &self,
        repo: &RepoName,
        reference: &Reference,
        actor: &EventActor,
    ) -> Result<Outcome, RegistryError> {
        match self.delete_manifest(repo, reference, actor).await {
            Ok(()) => Ok(Outcome::Deleted),
            Err(RegistryError::ManifestUnknown | RegistryError::NameUnknown) => Ok(Outcome::Gone),
            Err(RegistryError::TagImmutable(_)) => Ok(Outcome::Immutable),
            Err(e) => Err(e),
        }
    }
}

/// What became of one planned delete.
enum Outcome {
    Deleted,
    /// Deleted by someone else meanwhile.
    Gone,
    /// A tag-immutability rule now protects it.
    Immutable,
}

fn bad_row(value: &str) -> RegistryError {
    RegistryError::Internal(format!("the database holds an invalid name or digest {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(name: &str, pushed_at: i64, last_pulled_at: Option<i64>) -> RetentionTag {
        RetentionTag { name: name.into(), digest: format!("sha256:{name}"), pushed_at, last_pulled_at }
    }

    fn rule(f: impl FnOnce(&mut RetentionRule)) -> RetentionRule {
        let mut r = RetentionRule { repository: "p/*".into(), ..Default::default() };
        f(&mut r);
        r
    }

    fn kept_names(rules: &[RetentionRule], tags: &[RetentionTag], now: i64) -> Vec<String> {
        let compiled: Vec<Compiled> = rules.iter().map(|r| Compiled::new(r).unwrap()).collect();
        let refs: Vec<&Compiled> = compiled.iter().collect();
        tags.iter().zip(kept(&refs, tags, now)).filter(|(_, k)| *k).map(|(t, _)| t.name.clone()).collect()
    }

    #[test]
    fn any_criterion_of_any_rule_keeps_a_tag() {
        let day = 86_400;
        let now = 100 * day;
        // Newest first, as the store returns them.
        let tags = [
            tag("latest", now - 10, None),
            tag("v2.0.0", now - 20, None),
            tag("1.4.1", 50 * day, Some(now - day)),
            tag("v1.2.0", 40 * day, None),
            tag("v1.2.0-rc.1", 39 * day, None),
            tag("1.1", 30 * day, None),
            tag("stable", 20 * day, None),
            tag("old", 10 * day, None),
        ];
        let last2 = rule(|r| r.keep_last = Some(2));
        assert_eq!(kept_names(std::slice::from_ref(&last2), &tags, now), ["latest", "v2.0.0"]);
        let semver = rule(|r| r.keep_semver = Some(">=1.2, <2".into()));
        assert_eq!(kept_names(&[semver], &tags, now), ["1.4.1", "v1.2.0"], "pre-releases and 1.1 are no match");
        let named = rule(|r| r.keep_tags = Some("^(stable|latest)$".into()));
        assert_eq!(kept_names(std::slice::from_ref(&named), &tags, now), ["latest", "stable"]);
        let pulled = rule(|r| r.keep_pulled_within_days = Some(7));
        assert_eq!(kept_names(&[pulled], &tags, now), ["latest", "v2.0.0", "1.4.1"], "pulled or pushed lately");
        let both = rule(|r| {
            r.keep_last = Some(1);
            r.keep_tags = Some("^old$".into());
        });
        assert_eq!(kept_names(&[both, named], &tags, now), ["latest", "stable", "old"]);
        assert!(kept_names(&[last2], &[], now).is_empty());
    }

    #[test]
    fn policies_are_validated() {
        let policy = |rules: Vec<RetentionRule>, untagged_hours| RetentionPolicy {
            project: "p".into(),
            enabled: true,
            untagged_hours,
            rules,
            updated_at: 0,
        };
        let ok = rule(|r| r.keep_last = Some(3));
        assert_eq!(validate(&policy(vec![ok.clone()], Some(24))), Ok(()));
        assert_eq!(validate(&policy(vec![], None)), Ok(()));
        for (bad, why) in [
            (rule(|_| {}), "keeps nothing"),
            (rule(|r| r.keep_last = Some(0)), "keep_last"),
            (rule(|r| r.keep_pulled_within_days = Some(-1)), "keep_pulled_within_days"),
            (rule(|r| r.keep_tags = Some("(".into())), "keep_tags"),
            (rule(|r| r.keep_semver = Some(">=banana".into())), "keep_semver"),
            (rule(|r| r.keep_semver = Some(" ".into())), "keep_semver"),
            (RetentionRule { repository: "q/*".into(), ..ok.clone() }, "glob"),
            (RetentionRule { repository: "p/A".into(), ..ok.clone() }, "glob"),
        ] {
            let err = validate(&policy(vec![bad], None)).expect_err(why);
            assert!(err.contains(why) || why == "glob" && err.contains("must be a glob"), "{why}: {err}");
        }
        assert!(validate(&policy(vec![ok.clone()], Some(0))).is_err(), "untagged_hours");
        assert!(validate(&policy(vec![ok; MAX_RULES + 1], None)).is_err());
    }
}
