//! Records the git commit berth was built from and its date, for `berth --version`
//! and `GET /api/version`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=BERTH_GIT_COMMIT");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
    let commit = std::env::var("BERTH_GIT_COMMIT").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    });
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
    // The commit's date, not the clock's: the same source gives the same binary.
    let date = std::env::var("BERTH_COMMIT_DATE").ok().or_else(|| {
        Command::new("git")
            .args(["show", "-s", "--format=%cs", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
    });
    println!("cargo:rerun-if-env-changed=BERTH_COMMIT_DATE");
    println!("cargo:rustc-env=BERTH_COMMIT_DATE={}", date.unwrap_or_else(|| "unknown".into()));
}
