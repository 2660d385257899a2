//! Black-box API tests: the real router on a random port, a fresh PostgreSQL database per
//! test (`#[sqlx::test]`) and the real Redis, with keys namespaced per test.

mod auth;
mod curb;
mod errors;
mod first_run;
mod guest_access;
mod helpers;
mod hostile;
mod job_queue;
mod lifecycle;
mod openapi;
mod operations;
mod payments;
mod quotes;
mod receipts;
mod recovery;
mod refunds;
mod reminders;
mod reservations;
mod saved_cards;
mod smtp_sink;
mod spots;
mod tcp_proxy;
