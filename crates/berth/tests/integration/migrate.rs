//! Moving a single-node install (fs + SQLite) to PostgreSQL + S3 with
//! `storage-migrate` and `meta-migrate`. Runs when the test services are set
//! (BERTH_TEST_POSTGRES_URL, BERTH_TEST_S3_*), as `.ci/run` does.

use std::process::Command;

use berth_testkit::{BerthProcess, ImageFixture};

use crate::common::{self, client, push_image};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// A fresh PostgreSQL database URL and S3 storage URL, or None without services.
pub(crate) fn scale_out_urls() -> Option<(String, String)> {
    let pg = std::env::var("BERTH_TEST_POSTGRES_URL").ok()?;
    let endpoint = std::env::var("BERTH_TEST_S3_ENDPOINT").ok()?;
    let bucket = std::env::var("BERTH_TEST_S3_BUCKET").unwrap_or_else(|_| "berth-test".into());
    let name = format!("berth_migrate_{}", uuid_like());
    let admin = Command::new("psql").args([&pg, "-qc", &format!("CREATE DATABASE {name}")]).status();
    assert!(admin.map(|s| s.success()).unwrap_or(false), "psql must be able to create a test database");
    let base = pg.rsplit_once('/').map_or(pg.as_str(), |(b, _)| b).to_owned();
    let storage = format!("s3://{bucket}/migrate-{name}?endpoint={endpoint}&path_style=true");
    Some((format!("{base}/{name}"), storage))
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", t, std::process::id())
}

/// The test S3 keys as the variables berth reads.
pub(crate) fn s3_keys() -> Vec<(&'static str, String)> {
    let mut keys = Vec::new();
    if let Ok(k) = std::env::var("BERTH_TEST_S3_ACCESS_KEY") {
        keys.push(("AWS_ACCESS_KEY_ID", k));
    }
    if let Ok(s) = std::env::var("BERTH_TEST_S3_SECRET_KEY") {
        keys.push(("AWS_SECRET_ACCESS_KEY", s));
    }
    keys
}

fn s3_env(cmd: &mut Command) -> &mut Command {
    cmd.envs(s3_keys())
}

#[tokio::test]
async fn single_node_moves_to_postgres_and_s3() {
    let Some((database_url, storage_url)) = scale_out_urls() else {
        eprintln!("scale-out services not configured; skipping the migration test");
        return;
    };
    let mut old = common::start();
    let c = client();
    let image = ImageFixture::new(90, &[3 * 1024 * 1024, 9 * 1024 * 1024 + 5]);
    push_image(&c, &old.url(), "moving/app", &image, "v1").await;
    assert!(old.terminate());

    let data = old.data_dir().to_owned();
    for (command, from, to) in [
        ("storage-migrate", format!("fs://{}", data.display()), storage_url.clone()),
        ("meta-migrate", format!("sqlite://{}", data.join("berth.db").display()), database_url.clone()),
    ] {
        // Twice: a re-run after completion must be a harmless no-op (resumability).
        for _ in 0..2 {
            let out = s3_env(Command::new(BIN).args([command, "--from", &from, "--to", &to])).output().unwrap();
            assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    let keys = s3_keys();
    let env: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let new = BerthProcess::start_with_env(BIN, &["--database-url", &database_url, "--storage", &storage_url], &env);
    let base = new.url();
    let r = c.get(format!("{base}/v2/moving/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), image.manifest.as_slice());
    for blob in image.blobs() {
        let r = c.get(format!("{base}/v2/moving/app/blobs/{}", blob.digest)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.unwrap().as_ref() == blob.data.as_slice(), "blob {} survives the move", blob.digest);
    }
}
