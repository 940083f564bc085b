//! `replay`: the auditor's tool. Read-only against the log (it never
//! appends), from a data directory, a PostgreSQL URL or an export file.
//!
//! Exit codes: 0 when everything checked holds; 1 when something does not
//! (the first failure is named, with its sequence); 2 when the command
//! could not run (bad arguments, unreadable input).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Parser, Subcommand};
use domain::checkpoint::Checkpoint;
use domain::proof::{InclusionProof, ProofCheckError};
use ed25519_dalek::VerifyingKey;
use usecases::views::queries::AuditEntryView;

mod as_of;
mod erasures;
mod integrity;
mod readmodels;
mod source;
mod walk;

use source::Source;
use walk::{Failure, Plan, Walk};

#[derive(Parser)]
#[command(name = "replay", version, about = "Verify, rebuild, query and prove a ledger's history (read-only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the history is.
#[derive(Args, Clone)]
struct From {
    /// A ledger data directory (its SQLite log, snapshots and keys).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL log.
    #[arg(long)]
    database_url: Option<String>,
    /// A file written by `replay export`.
    #[arg(long)]
    file: Option<PathBuf>,
}

impl From {
    async fn open(&self) -> anyhow::Result<Source> {
        Source::open(
            self.data_dir.as_deref(),
            self.database_url.as_deref().filter(|u| !u.is_empty()),
            self.file.as_deref(),
        )
        .await
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check everything: every record's hashes and the chain, every payload,
    /// every kept checkpoint (signature, root, consistency), checkpoints you
    /// kept, the projections against the live snapshot, the read models
    /// against the live ones (rebuilt into a scratch file), every invoice.
    Verify {
        #[command(flatten)]
        from: From,
        /// The checkpoint public key (base64, or a file holding it or its 32
        /// bytes); by default the data directory's.
        #[arg(long)]
        public_key: Option<String>,
        /// A checkpoint note you kept (repeatable): the log must still hold it.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
    },
    /// Rebuild the projections from sequence 1, with a progress bar: the
    /// in-memory state and the durable read-model tables, into a scratch
    /// SQLite file (removed on exit, or kept at --out); prints each
    /// table's rows and digest.
    Rebuild {
        #[command(flatten)]
        from: From,
        /// Keep the rebuilt read models in this new file (never in the
        /// data directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// An organization, its subscriptions, usage and invoices as the
    /// ledger had recorded them (in the API's shapes) at a time (RFC 3339, or a date for its end)
    /// or sequence.
    AsOf {
        /// A sequence, an RFC 3339 time, or YYYY-MM-DD (the end of that day, UTC).
        at: String,
        #[arg(long, required_unless_present = "revenue", conflicts_with = "revenue")]
        org: Option<uuid::Uuid>,
        /// Instead of an organization: the revenue figures of the day's
        /// month up to the day (README, "Revenue analytics"), as `GET
        /// /analytics/revenue` and `ledger report --as-of` answer them.
        #[arg(long)]
        revenue: bool,
        #[command(flatten)]
        from: From,
    },
    /// The history as JSON Lines, one record a line with its hashes.
    Export {
        #[command(flatten)]
        from: From,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// An inclusion proof of one record, against the latest checkpoint kept
    /// in the log that covers it (or the given one, or the head).
    Prove {
        #[arg(long)]
        sequence: u64,
        /// A checkpoint note to prove against.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[command(flatten)]
        from: From,
    },
    /// Checks a proof (from `prove` or the API) offline: the record's leaf,
    /// the path to the root, the checkpoint's signature.
    CheckProof {
        /// The proof (JSON).
        #[arg(long)]
        proof: PathBuf,
        /// The checkpoint note; by default the one inside the proof.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The checkpoint public key (base64, or a file).
        #[arg(long)]
        public_key: String,
    },
    /// An organization's audit trail: who did what, when, from where (one
    /// JSON line an entry, as `GET /audit` lists them).
    Audit {
        #[arg(long)]
        org: uuid::Uuid,
        #[command(flatten)]
        from: From,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(failure)) => {
            println!("FAILED {failure}");
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("replay: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// What a command comes to: done (`Ok(Ok)`), a failure found in the
/// history (`Ok(Err)`, exit 1), or unable to run (`Err`, exit 2).
type Outcome = anyhow::Result<Result<(), Failure>>;

async fn run(command: Command) -> Outcome {
    match command {
        Command::Verify { from, public_key, checkpoints } => verify(from, public_key, checkpoints).await,
        Command::Rebuild { from, out } => rebuild(from, out).await,
        Command::AsOf { at, org, revenue: _, from } => {
            let what = org.map_or(as_of::What::Revenue, |org| as_of::What::Organization(domain::OrganizationId(org)));
            as_of::as_of(&at, what, from).await
        }
        Command::Export { from, out } => export(from, out).await,
        Command::Prove { sequence, checkpoint, from } => prove(sequence, checkpoint, from).await,
        Command::CheckProof { proof, checkpoint, public_key } => {
            check_proof(&proof, checkpoint.as_deref(), &public_key)
        }
        Command::Audit { org, from } => audit(domain::OrganizationId(org), from).await,
    }
}

async fn rebuild(from: From, out: Option<PathBuf>) -> Outcome {
    let started = std::time::Instant::now();
    let source = from.open().await?;
    let mut scratch = readmodels::Scratch::create(out.as_deref(), source.data_dir(), |_| u64::MAX).await?;
    let plan = Plan { state: true, progress: true, ..Default::default() };
    let done = match walk::walk_into(&source, &plan, Some(&mut scratch)).await? {
        Ok(done) => done,
        Err(failure) => return Ok(Err(failure)),
    };
    let rebuilt = match scratch.finish().await? {
        Ok(rebuilt) => rebuilt,
        Err(failure) => return Ok(Err(failure)),
    };
    let (bytes, digest) = done.state.encode();
    println!(
        "rebuilt {} records in {:.2} s: {} organizations, {} subscriptions, {} licenses; state {} bytes, digest {digest}",
        done.records,
        started.elapsed().as_secs_f64(),
        done.state.organizations.len(),
        done.state.subscriptions.len(),
        done.state.licenses.len(),
        bytes.len()
    );
    let sequence = rebuilt.iter().map(|(_, c)| c.sequence).min().unwrap_or(0);
    let tables = projections::db::digest(&scratch.db, &readmodels::tables()).await?;
    println!(
        "read models: {} tables rebuilt to sequence {sequence} in {} ({})",
        tables.len(),
        scratch.path.display(),
        if scratch.kept() { "kept" } else { "removed on exit" }
    );
    for table in &tables {
        println!("table {} rows {} digest {}", table.table, table.rows, table.digest);
    }
    println!("rebuilt in {:.2} s", started.elapsed().as_secs_f64());
    Ok(Ok(()))
}

async fn export(from: From, out: Option<PathBuf>) -> Outcome {
    let source = from.open().await?;
    let written = match out {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
            );
            source::export(&source, &mut file).await?
        }
        None => source::export(&source, &mut std::io::BufWriter::new(std::io::stdout().lock())).await?,
    };
    eprintln!("exported {written} records");
    Ok(Ok(()))
}

/// The organization's audit entries, one JSON line each, in the API's
/// shape (`GET /audit`'s items).
async fn audit(org: domain::OrganizationId, from: From) -> Outcome {
    let plan = Plan { state: true, ..Default::default() };
    let done = match walk::walk(&from.open().await?, &plan).await? {
        Ok(done) => done,
        Err(failure) => return Ok(Err(failure)),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for entry in done.state.audit.iter().filter(|e| e.organization_id == Some(org)) {
        serde_json::to_writer(&mut out, &AuditEntryView::from(entry))?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(Ok(()))
}

/// A public key given as base64 text, or a file holding base64 text or the
/// 32 bytes themselves.
fn public_key(given: &str) -> anyhow::Result<VerifyingKey> {
    let path = Path::new(given);
    let bytes = if path.is_file() {
        let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if raw.len() == 32 {
            raw
        } else {
            STANDARD
                .decode(String::from_utf8_lossy(&raw).trim())
                .context("the key file is neither 32 bytes nor base64")?
        }
    } else {
        STANDARD.decode(given.trim()).context("--public-key is neither a file nor base64")?
    };
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("a public key is 32 bytes"))?;
    VerifyingKey::from_bytes(&bytes).context("not an Ed25519 public key")
}

/// The checkpoint key of a data directory (derived from its seed file).
fn data_dir_key(dir: &Path) -> anyhow::Result<VerifyingKey> {
    let path = dir.join("keys").join("checkpoint.ed25519");
    let seed: [u8; 32] = std::fs::read(&path)
        .with_context(|| format!("reading {} (or give --public-key)", path.display()))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} is not 32 bytes", path.display()))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key())
}

async fn verify(from: From, key: Option<String>, kept_files: Vec<PathBuf>) -> Outcome {
    let source = from.open().await?;
    let trusted = match (&key, source.data_dir()) {
        (Some(given), _) => Some(public_key(given)?),
        (None, Some(dir)) => Some(data_dir_key(dir)?),
        (None, None) => None,
    };
    let mut yours = Vec::new();
    for path in &kept_files {
        let note = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        yours.push((path.clone(), note));
    }
    let database_url = from.database_url.as_deref().filter(|u| !u.is_empty());
    let mut models = readmodels::prepare(source.data_dir(), database_url, from.file.is_some()).await?;
    // The integrity phase first: a defect in the records, the chain, the
    // tree or a checkpoint stops before any read model is rebuilt.
    let integrity = match integrity::check(&source, trusted, &yours).await? {
        Ok(integrity) => integrity,
        Err(failure) => return Ok(Err(failure)),
    };
    report_integrity(&integrity, yours.len());
    let started = std::time::Instant::now();
    let plan = Plan {
        decode_strictly: true,
        invoices: true,
        erasures: true,
        snapshot: true,
        state: true,
        progress: true,
        ..Default::default()
    };
    let scratch = models.as_mut().ok().map(|(_, scratch)| scratch);
    let done = match walk::walk_into(&source, &plan, scratch).await? {
        Ok(done) => done,
        Err(failure) => return Ok(Err(failure)),
    };
    let models = match readmodels::verify(models).await? {
        Ok(line) => line,
        Err(failure) => return Ok(Err(failure)),
    };
    report_rebuild(&done, &models, started.elapsed().as_secs_f64());
    let total = integrity.seconds + started.elapsed().as_secs_f64();
    println!("verified in {total:.2} s ({})", rate(done.records, total));
    Ok(Ok(()))
}

fn rate(records: u64, seconds: f64) -> String {
    let rate = if seconds > 0.0 { records as f64 / seconds } else { 0.0 };
    format!("{rate:.0} records/s")
}

fn report_integrity(checked: &integrity::Integrity, yours: usize) {
    let records = checked.records;
    println!("ok records: {records} (sequences 1 to {records}), every leaf and chain hash recomputed");
    println!("ok head: chain hash {}, Merkle root {}", checked.chain, checked.root.to_hex());
    let key_names: Vec<String> = checked.keys.iter().map(|(_, k)| STANDARD.encode(k.to_bytes())).collect();
    println!(
        "ok checkpoints: {} kept in the log, {} of yours; signatures, roots, chain hashes and consistency hold (keys: {})",
        checked.kept,
        yours,
        if key_names.is_empty() { "none needed".into() } else { key_names.join(", ") }
    );
    println!(
        "integrity (records, chain, Merkle tree, checkpoints): {records} records in {:.2} s ({})",
        checked.seconds,
        rate(records, checked.seconds)
    );
}

fn report_rebuild(done: &Walk, models: &str, seconds: f64) {
    println!("ok payloads: every one decodes");
    println!(
        "ok erasures: {} records erased, each sanctioned by the privacy event it names ({} usage records retired)",
        done.erased, done.retired
    );
    match &done.snapshot_compared {
        Some((sequence, digest)) => {
            println!(
                "ok projections: rebuilt from sequence 1, digest {digest} at sequence {sequence} matches the live snapshot"
            )
        }
        None => println!("ok projections: rebuilt from sequence 1 (no live snapshot to compare with)"),
    }
    println!("ok read models: {models}");
    println!(
        "ok invoices: {} re-derived from their events byte for byte, {} checked against recorded inputs (usage retired)",
        done.invoices_checked, done.invoices_on_recorded_inputs
    );
    println!(
        "rebuild (payloads, erasures, projections, read models, invoices): {} records in {seconds:.2} s ({})",
        done.records,
        rate(done.records, seconds)
    );
}

async fn prove(sequence: u64, checkpoint: Option<PathBuf>, from: From) -> Outcome {
    let source = from.open().await?;
    let plan = Plan { tree: true, checkpoints: true, ..Default::default() };
    let done = match walk::walk(&source, &plan).await? {
        Ok(done) => done,
        Err(failure) => return Ok(Err(failure)),
    };
    let (size, note) = match checkpoint {
        Some(path) => {
            let note = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let (checkpoint, _, _) = Checkpoint::parse(&note)?;
            (checkpoint.size, Some(note))
        }
        None => match done.kept.iter().rev().find(|kept| kept.checkpoint.size >= sequence) {
            Some(kept) => (kept.checkpoint.size, Some(kept.note.clone())),
            None => (done.tree.size(), None),
        },
    };
    if sequence == 0 || sequence > size {
        bail!("sequence {sequence} is not in a tree of size {size}");
    }
    let proof = done.tree.inclusion_proof(sequence - 1, size)?;
    let mut pages = source.pages(size);
    let mut record = None;
    while let Some(page) = pages.recv().await {
        if let Some(found) = page?.into_iter().find(|r| r.header.sequence == sequence) {
            record = Some(found);
            break;
        }
    }
    let record = record.context("the record is not in the log")?;
    let answer = InclusionProof::new(&record, size, &proof, done.tree.root(size)?, note);
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(Ok(()))
}

fn check_proof(path: &Path, checkpoint: Option<&Path>, key: &str) -> Outcome {
    let key = public_key(key)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let proof: InclusionProof =
        serde_json::from_str(&text).context("the proof is not in the format of `replay prove`")?;
    let note = match checkpoint {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => proof.checkpoint.clone().context("the proof carries no checkpoint: give --checkpoint")?,
    };
    let record = &proof.record;
    match proof.check(&note, &key) {
        Ok(checkpoint) => {
            println!(
                "ok record {} ({} on {}) is in the log of size {} signed at {} by {}",
                record.sequence,
                record.event_type,
                record.stream_id,
                checkpoint.size,
                checkpoint.time,
                STANDARD.encode(key.to_bytes())
            );
            Ok(Ok(()))
        }
        Err(ProofCheckError::DoesNotHold(what)) => Ok(Err(Failure { sequence: Some(record.sequence), what })),
        Err(ProofCheckError::Malformed(why)) => Err(anyhow::Error::msg(why)),
    }
}
