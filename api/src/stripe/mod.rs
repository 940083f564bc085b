//! Stripe in the HTTP server: what runs in `usecases::stripe` (webhook
//! intake, the reactor, the sync, the client and its settings), and
//! checkout, which starts Stripe Checkout sessions and provisions what a
//! completed one bought.
//!
//! The names below keep the paths `crate::stripe::…` that `checkout`
//! uses; `reactor` runs the reactor (a use case) with this server's Stripe
//! client.

pub mod checkout;
pub mod reactor;

pub use usecases::stripe::{Settings, Stripe, signature};
