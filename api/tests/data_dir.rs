//! The data directory, as the real `ledger` binary leaves it: private to
//! the server's user (it holds e-mail and IP addresses, and the keys),
//! one key set however many processes start on it at once, a clear error
//! for a key file it cannot read, and first-start tokens in a private file,
//! never on the terminal (and so never in the journal).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `ledger serve` started without bootstrap tokens in its environment.
struct Process {
    child: Child,
    base: String,
    output: Arc<Mutex<Vec<String>>>,
}

impl Process {
    async fn start(data_dir: &Path) -> Self {
        let (child, output) = Self::spawn(data_dir);
        let Some(address) = listening(&output).await else {
            panic!("the server did not start: {:#?}", output.lock().unwrap())
        };
        let process = Self { child, base: format!("http://{address}"), output };
        // Answering requests: its signal handlers are in place too.
        while process.get("/health", None).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        process
    }

    /// Starts the process, without waiting for anything.
    fn spawn(data_dir: &Path) -> (Child, Arc<Mutex<Vec<String>>>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["serve", "--listen", "127.0.0.1:0", "--clock", "fixed:2026-01-01T00:00:00Z", "--data-dir"])
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("LEDGER_OPERATOR_TOKEN")
            .env_remove("LEDGER_AUDITOR_TOKEN")
            .env("LEDGER_CHECKPOINT_INTERVAL_SECONDS", "0")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the ledger binary starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        for (pipe, name) in [
            (Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>, "stderr"),
            (Box::new(child.stdout.take().unwrap()), "stdout"),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    output.lock().unwrap().push(format!("{name}: {line}"));
                }
            });
        }
        (child, output)
    }

    fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        let status = terminate(&mut self.child).await;
        assert!(status.success(), "{status:?}");
    }
}

/// The address of the listening line, once the process printed it.
async fn listening(output: &Mutex<Vec<String>>) -> Option<String> {
    let wait = async {
        loop {
            let address = output.lock().unwrap().iter().find_map(|line| {
                line.strip_prefix("stdout: ledger listening on http://")
                    .and_then(|rest| rest.split_whitespace().next())
                    .map(str::to_owned)
            });
            if let Some(address) = address {
                return address;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.ok()
}

/// Sends SIGTERM and waits (bounded) for the exit.
async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("running");
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("it stops").unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The tokens in the first-start file, by role.
fn tokens(data_dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data_dir.join("first-start-tokens.txt")).expect("the tokens file");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(": "))
        .map(|(role, token)| (role.to_owned(), token.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_and_the_sqlite_files_are_private() {
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = parent.path().join("data");
    let s = Process::start(&data).await;
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("keys")), 0o700, "the keys directory");
    let files = [
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-shm",
        "readmodels.sqlite",
        "readmodels.sqlite-wal",
        "readmodels.sqlite-shm",
        "readmodels.sqlite-migrate.lock",
        "readmodels.lock",
        "keys/secret",
        "keys/lease.ed25519",
    ];
    for file in files {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_on_a_fresh_data_directory_agree_on_one_key_set() {
    const PROCESSES: usize = 6;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let started = futures::future::join_all((0..PROCESSES).map(|_| Process::start(&data))).await;
    let mut keys = Vec::new();
    for s in &started {
        let (status, body) = s.get("/api/v1/keys", None).await;
        assert_eq!(status, 200);
        keys.push(body);
    }
    assert!(keys.windows(2).all(|pair| pair[0] == pair[1]), "one key set: {keys:#?}");
    // One operator and one auditor token were kept, each written down once,
    // and they open every process.
    let tokens = tokens(&data);
    let roles: Vec<&str> = tokens.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(roles.iter().filter(|r| **r == "operator").count(), 1, "{tokens:?}");
    assert_eq!(roles.iter().filter(|r| **r == "auditor").count(), 1, "{tokens:?}");
    let operator = &tokens.iter().find(|(role, _)| role == "operator").unwrap().1;
    for s in &started {
        assert_eq!(s.get("/api/v1/organizations", Some(operator)).await.0, 200);
    }
    let leftovers: Vec<_> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files left: {leftovers:?}");
    for s in started {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_that_cannot_be_read_is_a_clear_error() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    std::fs::create_dir_all(data.join("keys/lease.ed25519")).unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run).await.expect("it stops at once").unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "an error, not a crash: {:?}\n{stderr}", output.status);
    assert!(stderr.contains("lease.ed25519"), "names the file: {stderr}");
    // A key file cut short is refused, never replaced.
    std::fs::remove_dir(data.join("keys/lease.ed25519")).unwrap();
    std::fs::write(data.join("keys/lease.ed25519"), [7; 5]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lease.ed25519") && stderr.contains("not 32"), "{stderr}");
    assert_eq!(std::fs::read(data.join("keys/lease.ed25519")).unwrap(), [7; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_tokens_go_to_a_private_file_never_to_the_terminal() {
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let s = Process::start(&data).await;
    let file = data.join("first-start-tokens.txt");
    assert_eq!(mode(&file), 0o600);
    let tokens = tokens(&data);
    assert_eq!(tokens.iter().map(|(role, _)| role.as_str()).collect::<Vec<_>>(), ["operator", "auditor"]);
    let output = s.output();
    for (_, token) in &tokens {
        assert!(output.iter().all(|line| !line.contains(token.as_str())), "never printed: {output:#?}");
    }
    assert!(output.iter().any(|line| line.contains(&file.display().to_string())), "its path is: {output:#?}");
    assert_eq!(s.get("/api/v1/organizations", Some(&tokens[0].1)).await.0, 200);
    s.stop().await;

    // Every start warns while the file is there; nothing new is written.
    let written = std::fs::read(&file).unwrap();
    let s = Process::start(&data).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let warned = |output: &[String]| output.iter().any(|line| line.contains("first-start tokens are still on disk"));
    assert!(warned(&s.output()), "{:#?}", s.output());
    assert_eq!(std::fs::read(&file).unwrap(), written);
    s.stop().await;
    std::fs::remove_file(&file).unwrap();
    let s = Process::start(&data).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!warned(&s.output()), "{:#?}", s.output());
    assert!(!file.exists(), "not written again");
    s.stop().await;
}

/// A SIGTERM that comes while the server is still starting (opening the
/// log, making its keys: its data directory exists, so `serve` has begun)
/// or just as it says it listens stops it cleanly: exit status 0, never the
/// signal's default death, and the next start on the same data directory
/// serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_during_the_start_stops_the_server_cleanly() {
    for delay_ms in [0, 30, 100, u64::MAX] {
        let parent = tempfile::tempdir().unwrap();
        let data = parent.path().join("data");
        let (mut child, output) = Process::spawn(&data);
        if delay_ms == u64::MAX {
            listening(&output).await.expect("it listens");
        } else {
            while !data.exists() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        let status = terminate(&mut child).await;
        assert!(status.success(), "SIGTERM {delay_ms} ms into the start: {status:?}, {:#?}", output.lock().unwrap());
        Process::start(&data).await.stop().await;
    }
}
