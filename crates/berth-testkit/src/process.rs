//! Running the real `berth` binary for tests.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `berth serve` child process listening on 127.0.0.1 with its own data dir.
pub struct BerthProcess {
    bin: PathBuf,
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    extra_env: Vec<(String, String)>,
    /// `host:port` the server listens on.
    pub addr: String,
    /// Everything the server has logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl BerthProcess {
    /// Starts `bin serve` on an ephemeral port with a fresh data dir.
    pub fn start(bin: impl AsRef<Path>) -> Self {
        Self::start_with(bin, &[])
    }

    /// Like [`BerthProcess::start`], with extra `serve` arguments.
    pub fn start_with(bin: impl AsRef<Path>, extra_args: &[&str]) -> Self {
        Self::start_with_env(bin, extra_args, &[])
    }

    /// Starts berth with authentication on (`auth.mode = "token"`, the product
    /// default) and the first admin's password set to `admin_password`.
    /// The plain constructors turn authentication off, because the protocol
    /// tests exercise the registry itself; the auth tests use this one.
    pub fn start_with_auth(bin: impl AsRef<Path>, admin_password: &str, env: &[(&str, &str)]) -> Self {
        // Rate limits are off here (the tests make hundreds of requests from one IP);
        // the rate-limit test turns them on with small budgets.
        let mut all = vec![
            ("BERTH_AUTH__MODE", "token"),
            ("BERTH_ADMIN_PASSWORD", admin_password),
            ("BERTH_RATE_LIMIT__ENABLED", "false"),
        ];
        all.extend_from_slice(env);
        Self::start_with_env(bin, &[], &all)
    }

    /// Like [`BerthProcess::start_with`], with extra environment variables.
    pub fn start_with_env(bin: impl AsRef<Path>, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut p = BerthProcess {
            bin: bin.as_ref().to_owned(),
            child: None,
            data_dir: tempfile::tempdir().expect("temp data dir"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            addr: String::new(),
            log: Default::default(),
        };
        p.spawn("127.0.0.1:0");
        p
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn spawn(&mut self, listen: &str) {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .args(["--listen", listen])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(&self.extra_args)
            .env("BERTH_AUTH__MODE", "none")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or_default().to_owned();
                    if let Some(tx) = tx.take() {
                        tx.send(addr).ok();
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
        self.addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("berth did not report `listening on`; log:\n{}", self.log_lines().join("\n")));
        self.child = Some(child);
    }

    /// SIGKILLs the server (no chance to clean up) and waits for it to die.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().ok();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// Starts the server again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill();
        let addr = self.addr.clone();
        // The old socket may linger briefly; retry the same port for a moment.
        for _ in 0..50 {
            if std::net::TcpListener::bind(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.spawn(&addr);
    }
}

impl Drop for BerthProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
