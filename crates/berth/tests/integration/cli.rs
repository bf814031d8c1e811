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
