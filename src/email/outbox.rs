//! The email outbox: rows written with the change they announce, delivered at least once.
//! What an email says is its writer's business (see `reservations::notices`); here it is
//! only stored, claimed for sending, and marked sent, retried or given up.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// An email waiting to be (or already) sent.
#[derive(Debug, Clone)]
pub struct OutboxEmail {
    pub id: Uuid,
    pub to_address: String,
    pub subject: String,
    pub body: String,
    pub attempts: i32,
}

/// How long a claimed email is left to its sender before someone else may try it.
const CLAIM_LEASE: Duration = Duration::seconds(60);

/// Attempts before an email is given up on: with the backoff below, about 50 minutes of
/// trying, long enough to ride out an SMTP outage or a greylisting server.
pub const MAX_ATTEMPTS: i32 = 12;

/// An email to send, as it is written to the outbox.
pub struct NewEmail<'a> {
    /// The reservation it is about, for support and for its delivery jobs.
    pub reservation_id: Option<Uuid>,
    /// What it announces (`confirmed`, `receipt`, …).
    pub kind: &'a str,
    pub to_address: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Writes an email to the outbox; call it inside the transaction that makes the change it
/// announces, so the two commit or roll back together.
pub async fn insert(conn: &mut PgConnection, email: &NewEmail<'_>) -> sqlx::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "insert into email_outbox (id, reservation_id, kind, to_address, subject, body)
         values ($1, $2, $3, $4, $5, $6)",
        id,
        email.reservation_id,
        email.kind,
        email.to_address,
        email.subject,
        email.body,
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// Takes an unsent, due email for sending: it is leased to the caller for a minute, so a
/// job and the reconciler (or two deliveries of one job) never send it both.
///
/// `coalesce(…) is null` rather than `sent_at is null and failed_at is null`: with those
/// words the unsent-email index applies, and the generic plan (see
/// `db::with_session_settings`) walked every due email in it instead of finding this one by
/// its id.
pub async fn claim(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<OutboxEmail>> {
    sqlx::query_as!(
        OutboxEmail,
        "update email_outbox set next_attempt_at = now() + $2, attempts = attempts + 1
         where id = $1 and coalesce(sent_at, failed_at) is null and next_attempt_at <= now()
         returning id, to_address, subject, body, attempts",
        id,
        CLAIM_LEASE as Duration,
    )
    .fetch_optional(conn)
    .await
}

pub async fn mark_sent(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "update email_outbox set sent_at = now(), last_error = null where id = $1",
        id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a failed attempt; the email is due again after `retry_at`.
pub async fn mark_failed(
    conn: &mut PgConnection,
    id: Uuid,
    error: &str,
    retry_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "update email_outbox set last_error = $2, next_attempt_at = $3 where id = $1",
        id,
        error,
        retry_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up on an email: it stays unsent, marked failed with its last error, for operators.
pub async fn mark_given_up(conn: &mut PgConnection, id: Uuid, error: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "update email_outbox set last_error = $2, failed_at = now() where id = $1",
        id,
        error,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Emails given up on, for the `curbside_outbox_emails_failed` metric.
pub async fn count_failed(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from email_outbox where failed_at is not null"#
    )
    .fetch_one(conn)
    .await
}

/// Unsent emails that are due, oldest first.
pub async fn due(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!(
        "select id from email_outbox
         where sent_at is null and failed_at is null and next_attempt_at <= now()
         order by next_attempt_at limit $1",
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Wait before the next attempt after `attempts` failures: 2 s, 4 s, 8 s … up to 10 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 10) as u32;
    Duration::seconds((1_i64 << exponent).min(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        assert_eq!(backoff(1), Duration::seconds(2));
        assert_eq!(backoff(2), Duration::seconds(4));
        assert_eq!(backoff(9), Duration::seconds(512));
        assert_eq!(backoff(10), Duration::seconds(600));
        assert_eq!(backoff(50), Duration::seconds(600));
    }
}
