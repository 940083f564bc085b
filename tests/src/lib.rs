//! Shared pieces of the black-box tests: where a log lives, and the
//! `appender` process's protocol.

use std::sync::Arc;

use store::{EventLog, StoreError, SystemClock, testing};

/// Events in each command the appender writes, so a half-written command
/// would show as a group of fewer.
pub const EVENTS_PER_COMMAND: usize = 3;

/// Where the log under test lives, as command-line arguments.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl Target {
    pub fn args(&self) -> Vec<String> {
        match self {
            Target::Sqlite(path) => vec!["sqlite".into(), path.display().to_string()],
            Target::Postgres { url, schema } => vec!["postgres".into(), url.clone(), schema.clone()],
        }
    }

    pub fn from_args(args: &mut impl Iterator<Item = String>) -> Option<Self> {
        match args.next()?.as_str() {
            "sqlite" => Some(Target::Sqlite(args.next()?.into())),
            "postgres" => Some(Target::Postgres { url: args.next()?, schema: args.next()? }),
            _ => None,
        }
    }

    pub async fn open(&self) -> Result<EventLog, StoreError> {
        match self {
            Target::Sqlite(path) => EventLog::open_sqlite(path, Arc::new(SystemClock)).await,
            Target::Postgres { url, schema } => {
                EventLog::open_postgres(testing::schema_options(url, schema), Arc::new(SystemClock)).await
            }
        }
    }
}

/// One acknowledged command, as the appender prints it:
/// `ack <tag> <command index> <first sequence> <last sequence>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub tag: String,
    pub index: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
}

impl Ack {
    pub fn line(&self) -> String {
        format!("ack {} {} {} {}", self.tag, self.index, self.first_sequence, self.last_sequence)
    }

    pub fn parse(line: &str) -> Option<Self> {
        let mut words = line.split(' ');
        (words.next()? == "ack").then_some(())?;
        Some(Self {
            tag: words.next()?.to_owned(),
            index: words.next()?.parse().ok()?,
            first_sequence: words.next()?.parse().ok()?,
            last_sequence: words.next()?.parse().ok()?,
        })
    }
}

/// The payload of event `k` of command `index` of appender `tag`.
pub fn payload(tag: &str, index: u64, k: usize) -> Vec<u8> {
    format!("{tag}:{index}:{k}").into_bytes()
}

/// Reopens the log at `target` and checks what a crash or a race may not
/// break: the chain verifies to its head; every acknowledged command is
/// there with its payloads at its sequences; and every command in the log
/// is whole (all of its events, consecutively), so none was half-written.
/// Returns the number of records.
pub async fn check_log(target: &Target, acks: &[Ack]) -> u64 {
    use futures::TryStreamExt;
    use std::collections::BTreeMap;

    let log = target.open().await.expect("the log reopens");
    let report = log.verify(1..=u64::MAX).await.expect("verify runs");
    assert_eq!(report.failure, None, "the log verifies after {} records", report.checked);
    let head = log.head().await.unwrap();
    assert_eq!(report.checked, head.sequence);

    let records: Vec<_> = log.read(1..=u64::MAX).try_collect().await.unwrap();
    let mut commands: BTreeMap<(String, u64), Vec<(u64, usize)>> = BTreeMap::new();
    for record in &records {
        let text = String::from_utf8(record.payload.clone().unwrap()).unwrap();
        let mut parts = text.split(':');
        let (tag, index, k) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        commands
            .entry((tag.to_owned(), index.parse().unwrap()))
            .or_default()
            .push((record.header.sequence, k.parse().unwrap()));
    }
    for ((tag, index), events) in &commands {
        let first = events[0].0;
        let whole: Vec<(u64, usize)> = (0..EVENTS_PER_COMMAND).map(|k| (first + k as u64, k)).collect();
        assert_eq!(events, &whole, "command {tag}-{index} is whole and consecutive");
    }
    for ack in acks {
        let events =
            commands.get(&(ack.tag.clone(), ack.index)).unwrap_or_else(|| panic!("acknowledged {ack:?} is lost"));
        assert_eq!((events[0].0, events[EVENTS_PER_COMMAND - 1].0), (ack.first_sequence, ack.last_sequence));
    }
    head.sequence
}

/// A random number below `bound`, from the OS's randomness.
pub fn random_below(bound: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(bound)) as u64
}
