//! A throwaway PostgreSQL cluster for tests: Debian's server binaries (`scripts/setup --tests` installs them),
//! `initdb` into a temporary directory and `pg_ctl` on a free loopback port, run as `nobody` when the tests run
//! as root (PostgreSQL refuses to run as root). Stopped (immediately) and removed when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The directory of `initdb`/`pg_ctl`: Debian keeps them in /usr/lib/postgresql/<major>/bin, off the PATH.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    if let Some(b) = found.pop() {
        return b;
    }
    let which = Command::new("sh").args(["-c", "command -v initdb"]).output().expect("sh");
    let p = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert!(!p.is_empty(), "PostgreSQL's initdb not found: run scripts/setup --tests (it installs Debian's postgresql)");
    PathBuf::from(p).parent().unwrap().to_path_buf()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Pg {
    /// initdb + start; the server listens on 127.0.0.1 only, with trust authentication for user `foley`.
    pub fn start() -> Pg {
        let dir = tempfile::Builder::new().prefix("foley-pg-").tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown").args(["-R", "nobody"]).arg(dir.path()).status().unwrap();
            assert!(ok.success(), "chown of the PostgreSQL directory to nobody");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Pg { bin: bin_dir(), port, dir };
        pg.run("initdb", &["-D", &pg.data(), "-U", "foley", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        pg.ctl_start();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
        );
    }

    fn ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("pg.log").to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "-t", "60", "start"]);
    }

    /// `postgres://` URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://foley@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: open connections are cut, as in a crash of the network or a restart).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn start_again(&self) {
        self.ctl_start();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("pg.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let _ = cmd.args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
