//! A real `nats-server -js` for fleet tests: a free loopback port, a temp
//! store, stopped by PID; it can be stopped and started again on the same
//! port and store (a NATS outage).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts it; panics with the reason when `nats-server` is missing
    /// (`.ci/run` installs Debian's package).
    pub fn start() -> NatsServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = NatsServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.resume();
        n
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and store.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let bin = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start nats-server ({e}): install Debian's nats-server package")
            });
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let t = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it and throws its store away (a NATS cluster rebuilt from
    /// scratch: streams start again at sequence 1).
    pub fn wipe(&mut self) {
        self.stop();
        self.dir = tempfile::tempdir().unwrap();
    }

    /// Stops it by PID (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
