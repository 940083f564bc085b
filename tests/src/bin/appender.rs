//! The process under test: appends commands of three events to a log in a
//! loop, printing one `ack` line per acknowledged command, flushed, so the
//! parent knows exactly what was acknowledged before it kills this process.
//!
//! Usage: `appender TAG COUNT (sqlite PATH | postgres URL SCHEMA)`, where
//! COUNT 0 means until killed.

use std::io::Write;

use domain::{EventId, StreamId, Timestamp};
use ledger_tests::{Ack, EVENTS_PER_COMMAND, Target, payload};
use store::{Command, ExpectedRevision, Idempotency, NewEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: appender TAG COUNT (sqlite PATH | postgres URL SCHEMA)";
    let tag = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let count: u64 = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let target = Target::from_args(&mut args).ok_or_else(|| anyhow::anyhow!(usage))?;
    let log = target.open().await?;
    let stream_id = StreamId::new(format!("org/{tag}"))?;
    let mut stdout = std::io::stdout().lock();
    let mut index = 0;
    while count == 0 || index < count {
        let events: Vec<NewEvent> = (0..EVENTS_PER_COMMAND)
            .map(|k| NewEvent {
                event_id: EventId(uuid::Uuid::now_v7()),
                event_type: "CrashTestAppended".into(),
                schema_version: 1,
                occurred_at: Timestamp::from_micros(0),
                metadata: Vec::new(),
                payload: payload(&tag, index, k),
            })
            .collect();
        let command = Command {
            idempotency: Some(Idempotency::of_events(format!("{tag}-{index}"), &stream_id, &events)),
            stream_id: stream_id.clone(),
            expected: ExpectedRevision::Any,
            events,
        };
        let appended = log.append_one(command).await??;
        let ack = Ack {
            tag: tag.clone(),
            index,
            first_sequence: appended.first_sequence,
            last_sequence: appended.last_sequence,
        };
        writeln!(stdout, "{}", ack.line())?;
        stdout.flush()?;
        index += 1;
    }
    Ok(())
}
