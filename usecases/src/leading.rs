//! Work only the leader does (issue #13): the scheduler, the Stripe
//! reactor and sync, the notification sender and the checkpoint keeper
//! run on the node that runs the projections
//! (`ReadModels::leadership`), and wait on the others, which take over when
//! they become the leader.
//!
//! The loops this crate owns check leadership between rounds (and before
//! each e-mail or Stripe call), never in the middle of one: a round is not
//! cut between an SMTP acceptance and its record. Others are run by
//! [`while_leading`], which drops them when leadership goes. A former
//! leader that was stalled and wakes up believing it still leads does
//! no harm before it notices: every append it makes expects a stream
//! revision (a notice's or a Stripe event's stream, expected absent or at
//! revision 1) or is fenced (the projections' checkpoints), and Stripe calls
//! carry idempotency keys.

use std::future::Future;

use crate::Ledger;

/// Waits until this node leads; at once when it does.
pub async fn wait(ledger: &Ledger) {
    ledger.models.leadership().acquired().await;
}

/// Whether this node leads now.
pub fn leading(ledger: &Ledger) -> bool {
    ledger.models.is_leader()
}

/// Runs `task` whenever this node leads: starts it when leadership is
/// acquired, drops it when leadership is lost, and starts it again on the
/// next acquisition. Returns when the task itself ends (it has nothing to
/// do on this node).
pub async fn while_leading<F, T>(ledger: Ledger, name: &'static str, mut task: F)
where
    F: FnMut() -> T,
    T: Future<Output = ()>,
{
    loop {
        let leadership = ledger.models.leadership();
        leadership.acquired().await;
        tracing::info!(task = name, "this node leads: started");
        tokio::select! {
            () = task() => return,
            () = leadership.lost() => tracing::warn!(task = name, "leadership lost: stopped"),
        }
    }
}
