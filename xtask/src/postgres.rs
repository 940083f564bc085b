//! A throw-away PostgreSQL cluster for the PostgreSQL tests: `initdb` and
//! `pg_ctl` in a temporary directory, on a free port of 127.0.0.1, removed
//! when dropped (also after a failure or an interrupt).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::quiet;

/// Attempts at a free port (another process may take the one just found).
const START_ATTEMPTS: u32 = 3;

/// The directory holding `initdb` and `pg_ctl`: the newest version where
/// distributions put them (Debian and Ubuntu: /usr/lib/postgresql/N/bin;
/// the PGDG RPMs: /usr/pgsql-N/bin), else on `PATH`.
pub fn find_bin() -> Option<PathBuf> {
    let mut versioned = versions("/usr/lib/postgresql", "");
    versioned.extend(versions("/usr", "pgsql-"));
    versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    let path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    versioned
        .into_iter()
        .map(|(_, dir)| dir)
        .chain(path)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

/// `parent/<prefix>N/bin` for each version N.
fn versions(parent: &str, prefix: &str) -> Vec<(u32, PathBuf)> {
    let entries = std::fs::read_dir(parent).into_iter().flatten().flatten();
    entries
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix(prefix)?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect()
}

/// A running cluster, stopped and deleted when dropped.
pub struct Cluster {
    bin: PathBuf,
    /// `Some("postgres")` when this runs as root: initdb refuses root.
    user: Option<String>,
    dir: tempfile::TempDir,
    pub url: String,
}

impl Cluster {
    /// Creates and starts a cluster with the binaries in `bin`.
    pub fn start(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("ledger-pg-")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        // SAFETY: geteuid(2) has no preconditions.
        let user = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_owned());
        if let Some(user) = &user {
            give_to(dir.path(), user)?;
        }
        let mut cluster = Self { bin: bin.to_owned(), user, dir, url: String::new() };
        let data = cluster.dir.path().join("data");
        quiet(
            cluster
                .command("initdb")
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "-D"])
                .arg(&data),
        )?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            // Only TCP on loopback and a socket in the cluster's own directory.
            // fsync off: the cluster is thrown away; no test crashes the server.
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='{}' -c fsync=off -c max_connections=200",
                cluster.dir.path().display()
            );
            let log = cluster.dir.path().join("server.log");
            let started = quiet(
                cluster
                    .command("pg_ctl")
                    .args(["-w", "-t", "60", "-D"])
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-o", &options, "start"]),
            );
            match started {
                Ok(_) => {
                    cluster.url = format!("postgresql://postgres@127.0.0.1:{port}/postgres");
                    return Ok(cluster);
                }
                Err(why) => {
                    last = format!("{why}\n        {}", std::fs::read_to_string(&log).unwrap_or_default().trim_end())
                }
            }
        }
        Err(last)
    }

    /// `program` of the cluster's binaries, run as the cluster's user, in its directory.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        // The user may not be able to enter the caller's directory.
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate: nothing in it is kept. An error means it was not running.
        let data = self.dir.path().join("data");
        let _ = quiet(self.command("pg_ctl").args(["-w", "-m", "immediate", "-D"]).arg(data).arg("stop"));
        // The temporary directory removes itself after this.
    }
}

/// Makes `dir` belong to `user` (for a root run, whose cluster runs as `user`).
fn give_to(dir: &Path, user: &str) -> Result<(), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = quiet(Command::new("id").args([flag, user]))
            .map_err(|_| format!("initdb refuses to run as root, and there is no `{user}` user to run it as"))?;
        out.trim().parse().map_err(|e| format!("id {flag} {user}: {e}"))
    };
    std::os::unix::fs::chown(dir, Some(id("-u")?), Some(id("-g")?)).map_err(|e| format!("chown {}: {e}", dir.display()))
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| format!("a free port: {e}"))
}
