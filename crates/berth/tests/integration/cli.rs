//! The CLI contract operators and scripts rely on.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn run(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN).args(args).envs(envs.iter().copied()).output().expect("run berth");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn version_names_the_commit() {
    let (ok, out) = run(&["--version"], &[]);
    assert!(ok);
    assert!(out.contains(env!("CARGO_PKG_VERSION")) && out.contains("commit "), "{out}");
}

#[test]
fn print_default_config_is_a_valid_config() {
    let (ok, out) = run(&["config", "print-default"], &[]);
    assert!(ok);
    assert!(out.contains("listen = \"0.0.0.0:8080\"") && out.contains("data_dir = \"./berth-data\""));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, &out).unwrap();
    let (ok, out) = run(&["config", "check", "--config", file.to_str().unwrap()], &[]);
    assert!(ok, "{out}");
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "lisen = \"0.0.0.0:1\"\n").unwrap();
    let (ok, out) = run(&["serve", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("invalid configuration") && out.contains("lisen"), "{out}");

    let (ok, out) = run(&["serve", "--listen", "not-an-address"], &[]);
    assert!(!ok);
    assert!(out.contains("not-an-address"), "{out}");

    let (ok, out) = run(&["serve", "--config", "/nonexistent/berth.toml"], &[]);
    assert!(!ok && out.contains("does not exist"), "{out}");
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berth.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1111\"\n[registry]\nupload_expiry = \"2h\"\n").unwrap();
    let f = file.to_str().unwrap();
    let (ok, out) = run(&["config", "check", "--config", f], &[("BERTH_LISTEN", "127.0.0.1:2222")]);
    assert!(ok && out.contains("127.0.0.1:2222"), "{out}");
    let (ok, out) =
        run(&["config", "check", "--config", f, "--listen", "127.0.0.1:3333"], &[("BERTH_LISTEN", "127.0.0.1:2222")]);
    assert!(ok && out.contains("127.0.0.1:3333"), "{out}");
    let secret = dir.path().join("listen.txt");
    std::fs::write(&secret, "127.0.0.1:4444\n").unwrap();
    let (ok, out) = run(&["config", "check"], &[("BERTH_LISTEN_FILE", secret.to_str().unwrap())]);
    assert!(ok && out.contains("127.0.0.1:4444"), "{out}");
    let (ok, out) = run(&["config", "check"], &[("BERTH_REGISTRY__UPLOAD_EXPIRY", "soon")]);
    assert!(!ok && out.contains("soon"), "{out}");
}

#[test]
fn taken_port_and_unwritable_data_dir_fail_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(&["serve", "--listen", &addr, "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains(&format!("cannot listen on {addr}")), "{out}");

    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (ok, out) = run(&["serve", "--listen", "127.0.0.1:0", "--data-dir", file.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(out.contains("data dir"), "{out}");
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut server = crate::common::start();
    assert!(server.terminate(), "exit status 0 after SIGTERM; log: {:?}", server.log_lines());
    assert!(server.log_lines().iter().any(|l| l.contains("shut down cleanly")));
}

#[tokio::test]
async fn fsck_finds_missing_corrupt_and_orphaned_blobs() {
    let mut server = crate::common::start();
    let c = crate::common::client();
    let image = berth_testkit::ImageFixture::new(41, &[3000, 5000]);
    crate::common::push_image(&c, &server.url(), "fsck/app", &image, "v1").await;
    assert!(server.terminate());
    let dir = server.data_dir().to_str().unwrap().to_owned();

    let (ok, out) = run(&["fsck", "--verify-digests", "--data-dir", &dir], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("3 blobs checked (8"), "config + 2 layers: {out}");
    assert!(out.contains("0 missing, 0 corrupt, 0 stale rows, 0 orphans"), "{out}");

    let blob_path = |d: &berth_core::Digest| {
        let hex = d.encoded();
        server.data_dir().join("blobs/sha256").join(&hex[..2]).join(hex)
    };
    let (gone, damaged) = (&image.layers[0].digest, &image.layers[1].digest);
    std::fs::remove_file(blob_path(gone)).unwrap();
    let mut bytes = std::fs::read(blob_path(damaged)).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(blob_path(damaged), &bytes).unwrap();
    let orphan = berth_core::Digest::sha256(b"nobody knows me");
    std::fs::create_dir_all(blob_path(&orphan).parent().unwrap()).unwrap();
    std::fs::write(blob_path(&orphan), b"nobody knows me").unwrap();

    // Sizes only: the flipped byte goes unnoticed, the rest does not.
    let (ok, out) = run(&["fsck", "--data-dir", &dir], &[]);
    assert!(!ok, "a missing linked blob fails the check: {out}");
    assert!(out.contains(&format!("missing  {gone}")), "{out}");
    assert!(out.contains(&format!("orphan   {orphan} (15 bytes)")), "{out}");
    assert!(!out.contains("corrupt  "), "{out}");

    let (ok, out) = run(&["fsck", "--verify-digests", "--data-dir", &dir], &[]);
    assert!(!ok);
    assert!(out.contains(&format!("corrupt  {damaged}: bytes hash to sha256:")), "{out}");
    assert!(out.contains("1 missing, 1 corrupt, 0 stale rows, 1 orphans (15 bytes)"), "{out}");
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let mut first = crate::common::start();
    let dir = first.data_dir().to_str().unwrap().to_owned();
    let pid = first.pid().unwrap();
    let mut second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &dir])
        .env("BERTH_AUTH__MODE", "none")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while second.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if second.try_wait().unwrap().is_none() {
        second.kill().ok();
    }
    let out = second.wait_with_output().unwrap();
    let (ok, out) = (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(!ok, "{out}");
    assert!(out.contains("in use by another `berth serve`") && out.contains(&format!("pid {pid}")), "{out}");
    assert!(!first.log_lines().iter().any(|l| l.contains("ERROR")), "{:?}", first.log_lines());
    // Killed, it leaves no stale lock: the restart (SIGKILL, then start) comes up.
    first.restart();
    assert!(first.terminate(), "{:?}", first.log_lines());
}
