//! Stripe in the HTTP server: what runs in `usecases::stripe` (webhook
//! intake, the reactor, the sync, the client and its settings), and
//! checkout, which starts Stripe Checkout sessions and provisions what a
//! completed one bought.
//!
//! The names below keep the paths `crate::stripe::…` that `checkout`
//! uses. `reactor` is the seam between the reactor (a use case) and
//! checkout's provisioning (still here): once provisioning is a use case
//! too, the reactor calls it directly and `reactor` goes.

pub mod checkout;
pub mod reactor;

pub use usecases::stripe::{Settings, Stripe, signature};
