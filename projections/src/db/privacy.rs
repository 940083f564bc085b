//! Purging a data subject's personal data from the read models (issue 16).
//!
//! STUB: filled in by the read models' privacy work.

use domain::privacy::Subject;

use super::{DbError, ReadModelDb};

impl ReadModelDb {
    /// Removes or redacts every read-model row that holds personal data of
    /// `subject` (e-mail addresses, names, session addresses, OIDC
    /// subjects), keeping the facts every query answers from; on SQLite the
    /// WAL is checkpointed afterwards. Returns the rows changed.
    pub async fn purge_subject(&self, subject: &Subject) -> Result<u64, DbError> {
        let _ = subject;
        todo!("issue 16: purge the read models")
    }
}
