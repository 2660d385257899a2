//! What a job is and what its handler can answer: the vocabulary shared by whoever queues
//! jobs (the reservations' follow-ups) and the workers that run them.

/// Every background job. Serialized as JSON into Redis. Each must be idempotent: delivery is
/// at-least-once, and handlers re-read PostgreSQL before acting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// At `ends_at`: complete the reservation if its version still matches.
    EndReservation {
        reservation_id: uuid::Uuid,
        version: i32,
    },
    /// `REMINDER_MINUTES` before `ends_at`: remind the driver, if the version still matches.
    RemindReservation {
        reservation_id: uuid::Uuid,
        version: i32,
    },
    /// At `hold_expires_at`: expire a still-held reservation.
    ExpireHold {
        reservation_id: uuid::Uuid,
        version: i32,
    },
    /// Charge the final bill off-session.
    Charge { reservation_id: uuid::Uuid },
    /// Deliver one outbox email.
    SendEmail { outbox_id: uuid::Uuid },
}

/// What a handler tells the worker.
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// Try again later (after a backoff); e.g. SMTP or Stripe down.
    #[error("retry: {0}")]
    Retry(anyhow::Error),
    /// Never try again; e.g. the row is gone. (The reconciler in PostgreSQL is the safety net.)
    #[error("abort: {0}")]
    Abort(anyhow::Error),
}
