//! Leadership: exactly one process at a time runs the projectors (and,
//! later, the scheduler and the outboxes) over one database.
//!
//! - PostgreSQL: a session advisory lock held on a dedicated connection
//!   (`pg_try_advisory_lock`, keyed by the schema, so deployments in
//!   different schemas of one database do not contend). The server ends
//!   the session, and with it the lock, when the process dies (its socket
//!   closes) or stops answering: the lock connection sets
//!   `idle_session_timeout` and the leader pings it more often than that,
//!   so a leader stalled by SIGSTOP loses the lock within
//!   [`LEADER_SESSION_TIMEOUT`]. Followers try every
//!   [`LEADER_RETRY_INTERVAL`].
//! - SQLite: an exclusive `flock` on [`LEADER_LOCK_FILE`] in the data
//!   directory, which the OS releases when the process dies.
//!
//! A stalled former leader that wakes up believing it still leads is
//! harmless: its runner's next commit is fenced on the checkpoint, which
//! the new leader has moved.

use std::path::Path;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::watch;

/// How often a process that is not the leader tries to become it: another
/// node takes over within about this long after the leader's lock goes.
pub const LEADER_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// How often the leader checks that its lock connection is alive; well
/// under [`LEADER_SESSION_TIMEOUT`], so a live leader is never idle that long.
pub const LEADER_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long PostgreSQL keeps an idle lock session: a leader that stops
/// answering (SIGSTOP, a hung machine) loses the lock after this.
pub const LEADER_SESSION_TIMEOUT: Duration = Duration::from_secs(5);
/// The lock file in the data directory (SQLite).
pub const LEADER_LOCK_FILE: &str = "readmodels.lock";
/// The advisory lock's first key: "LDGR", the ledger's lock class; the
/// second is a hash of the schema.
const LEADER_LOCK_CLASS: i32 = 0x4c44_4752;

/// Whether this process is the leader, as it changes. Dropping it gives
/// leadership up.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // The task owns the lock (the connection or the file): ending it
        // releases the lock.
        self.task.abort();
    }
}

impl Leadership {
    /// Contends for leadership over the PostgreSQL schema `options` names.
    pub fn postgres(options: PgConnectOptions) -> Self {
        Self::postgres_hosts(store::PgHosts::one(options))
    }

    /// Contends for leadership on the writable host of `hosts`, found
    /// again each time the lock's connection is lost (a failover).
    pub fn postgres_hosts(hosts: store::PgHosts) -> Self {
        let (sender, state) = watch::channel(false);
        let task = tokio::spawn(lead_postgres(hosts, sender));
        Self { state, task }
    }

    /// Contends for leadership over the data directory `data_dir`.
    pub fn sqlite(data_dir: &Path) -> Self {
        let (sender, state) = watch::channel(false);
        let path = data_dir.join(LEADER_LOCK_FILE);
        let task = tokio::spawn(lead_file(path, sender));
        Self { state, task }
    }

    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Leadership as it changes.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Waits until this process leads.
    pub async fn acquired(&self) {
        let mut state = self.state.clone();
        // The sender lives as long as the task, which only ends when this
        // handle is dropped.
        let _ = state.wait_for(|leader| *leader).await;
    }

    /// Waits until this process no longer leads.
    pub async fn lost(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(|leader| !*leader).await;
    }
}

async fn lead_postgres(hosts: store::PgHosts, state: watch::Sender<bool>) {
    loop {
        let connected = match hosts.writable().await {
            Ok(options) => PgConnection::connect_with(&options).await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match connected {
            Ok(connection) => hold_postgres(connection, &state).await,
            Err(error) => tracing::warn!(%error, "leadership: cannot connect to PostgreSQL"),
        }
        state.send_replace(false);
        tokio::time::sleep(LEADER_RETRY_INTERVAL).await;
    }
}

/// Tries for the lock on one connection, holds it while the connection
/// lives; returns when the connection fails.
async fn hold_postgres(mut connection: PgConnection, state: &watch::Sender<bool>) {
    let timeout = format!("SET idle_session_timeout = {}", LEADER_SESSION_TIMEOUT.as_millis());
    if let Err(error) = sqlx::query(&timeout).execute(&mut connection).await {
        // Before PostgreSQL 14: a stalled leader keeps the lock until its
        // connection closes; fencing still keeps it harmless.
        tracing::warn!(%error, "leadership: cannot bound the lock session's idle time");
    }
    loop {
        let locked = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(LEADER_LOCK_CLASS)
            .fetch_one(&mut connection)
            .await;
        match locked {
            Ok(true) => break,
            Ok(false) => tokio::time::sleep(LEADER_RETRY_INTERVAL).await,
            Err(error) => {
                tracing::warn!(%error, "leadership: the lock query failed");
                return;
            }
        }
    }
    tracing::info!("leadership acquired");
    state.send_replace(true);
    loop {
        tokio::time::sleep(LEADER_CHECK_INTERVAL).await;
        // The same session still answering means it still holds the lock.
        if let Err(error) = sqlx::query("SELECT 1").execute(&mut connection).await {
            tracing::warn!(%error, "leadership lost: the lock connection failed");
            return;
        }
    }
}

async fn lead_file(path: std::path::PathBuf, state: watch::Sender<bool>) {
    use std::os::unix::fs::OpenOptionsExt;
    let file = loop {
        let opened = std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path);
        match opened {
            Ok(file) => match file.try_lock() {
                Ok(()) => break file,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(error)) => {
                    tracing::warn!(%error, path = %path.display(), "leadership: cannot lock the file");
                }
            },
            Err(error) => tracing::warn!(%error, path = %path.display(), "leadership: cannot open the lock file"),
        }
        tokio::time::sleep(LEADER_RETRY_INTERVAL).await;
    };
    tracing::info!("leadership acquired");
    state.send_replace(true);
    // Held until this task is aborted (the handle dropped) or the process
    // ends; the OS releases the lock either way.
    let _held = file;
    std::future::pending::<()>().await;
}
