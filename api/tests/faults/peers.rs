//! The outside peers of the fault tests and the faults put between them
//! and the server: a real SMTP server (aiosmtpd, `tests/smtp_sink.py`) and
//! a TCP proxy in front of a peer that can be made slow (each connection
//! waits before it is forwarded) or unreachable (its port closed: a
//! connection is refused, as when the peer is stopped), and then back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::{JoinHandle, JoinSet};

use crate::common::{OPERATOR, Server};

/// How long the SMTP server may take to start.
const SINK_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Connections one proxy forwards at a time, at most; more wait in the backlog.
const PROXY_CONNECTIONS_MAX: usize = 64;

/// Where `cargo xtask test` installs aiosmtpd.
fn python_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python")
}

/// A running aiosmtpd that keeps each message as a JSON file, in the
/// order received.
pub struct SmtpSink {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl SmtpSink {
    /// `None` (after a skip notice; a failure under CI) without aiosmtpd.
    pub async fn start(test: &str) -> Option<Self> {
        let found = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .env("PYTHONPATH", python_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            let why = "python3 cannot import aiosmtpd from target/python";
            store::testing::skip(test, store::testing::Peer::Aiosmtpd, why);
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py"))
            .args(["--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .env("PYTHONPATH", python_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(SINK_START_TIMEOUT, lines.next_line()).await;
        assert!(
            matches!(&ready, Ok(Ok(Some(line))) if line == "smtp sink ready"),
            "the SMTP sink did not start: {ready:?}"
        );
        Some(Self { child, dir, port })
    }

    /// Every message so far, in the order received.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
            .collect();
        names.sort();
        names
            .iter()
            .map(|name| serde_json::from_slice(&std::fs::read(self.dir.path().join(name)).unwrap()).unwrap())
            .collect()
    }

    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A TCP proxy on a port of its own to a peer's port.
pub struct Proxy {
    pub port: u16,
    target: u16,
    delay_ms: Arc<AtomicU64>,
    connections: Arc<AtomicUsize>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port for the proxy");
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            target,
            delay_ms: Arc::new(AtomicU64::new(0)),
            connections: Arc::new(AtomicUsize::new(0)),
            task: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    /// Each new connection waits `delay` before it reaches the peer (zero: none).
    pub fn slow(&self, delay: Duration) {
        self.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Closes the port and every forwarded connection: the peer is unreachable.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Opens the port again.
    pub async fn resume(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.expect("the proxy's port again");
        self.serve(listener);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn serve(&self, listener: TcpListener) {
        let (target, delay_ms, connections) = (self.target, self.delay_ms.clone(), self.connections.clone());
        let task = tokio::spawn(async move {
            // Dropped with the task: a stopped proxy cuts what it forwards.
            let mut open = JoinSet::new();
            loop {
                while open.try_join_next().is_some() {}
                if open.len() >= PROXY_CONNECTIONS_MAX {
                    open.join_next().await;
                }
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                connections.fetch_add(1, Ordering::SeqCst);
                let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                open.spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sum of the series `name` whose labels include each of `labels`
/// (0 when there is none), from the server's `/metrics`.
pub async fn metric(server: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = server.get("/metrics", Some(OPERATOR)).await.text;
    let mut sum = 0.0;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, number)) = line.rsplit_once(' ') else { continue };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name == name && labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))) {
            sum += number.parse::<f64>().expect("a number");
        }
    }
    sum
}
