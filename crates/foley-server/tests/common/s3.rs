//! A real S3-compatible server for the tests: moto's standalone server (`python3 -m moto.server`, installed by
//! `scripts/setup --tests`) on a free loopback port, killed when dropped.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "foley-test-key";
pub const SECRET_KEY: &str = "foley-test-secret";

pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Moto {
    /// Starts moto and waits (bounded) until it answers.
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is required for the S3 tests (run scripts/setup --tests): {e}"));
        let mut moto = Moto { child, port, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = moto.child.try_wait().unwrap() {
                panic!("moto's S3 server exited ({st}); install it with `scripts/setup --tests` (pip install 'moto[server]')");
            }
            if moto.request("GET", "/").is_some() {
                return moto;
            }
            assert!(Instant::now() < deadline, "moto's S3 server did not answer within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One plain HTTP request (moto takes unsigned requests); the response's status line and body.
    pub fn request(&self, method: &str, path: &str) -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port)
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.starts_with("HTTP/1.1").then_some(out)
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) {
        let r = self.request("PUT", &format!("/{bucket}")).expect("moto answers");
        assert!(r.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {r}");
    }

    /// The `AWS_*` variables that point an S3 client at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ]
    }
}
