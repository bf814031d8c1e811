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
    order_startup_code();
}

/// Release builds on x86_64 Linux place the functions start-up runs first and together
/// (`startup-order.txt`, made by `scripts/startup-order.sh`): the kernel maps 64 KiB of
/// code around every instruction fault, so start-up code spread over the whole text
/// segment made most of the idle RSS (measured: 20.8 -> 11.0 MiB). The toolchain's
/// default linker there is lld (mold reads the list too); a name the list misses only
/// stays where it was. `BERTH_NO_STARTUP_ORDER=1` skips it, for a linker that cannot.
fn order_startup_code() {
    println!("cargo:rerun-if-env-changed=BERTH_NO_STARTUP_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    let opted_out = std::env::var_os("BERTH_NO_STARTUP_ORDER").is_some_and(|v| !v.is_empty() && v != "0");
    if !release || target != "x86_64-unknown-linux-gnu" || opted_out {
        return;
    }
    let list =
        std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("startup-order.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={}", list.display());
    println!("cargo:rustc-link-arg-bin=berth=-Wl,--no-warn-symbol-ordering");
}
