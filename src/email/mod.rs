//! Email delivery: messages written to the outbox in the same transaction as the change
//! they announce (`outbox`) are delivered over SMTP, or in development into a folder, by a
//! job or the reconciler (`Mailer`, `deliver`).

pub mod outbox;

use std::time::Duration;

use anyhow::Context as _;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};
use secrecy::ExposeSecret as _;

use sqlx::PgPool;
use uuid::Uuid;

use crate::config::MailTransport;

pub use outbox::OutboxEmail;

/// Why an email was not sent, and whether trying again could ever help.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct SendError {
    /// The address or the server refuses this message for good: retrying is pointless.
    pub permanent: bool,
    pub error: anyhow::Error,
}

/// Delivers outbox emails over SMTP (`SMTP_URL`), or in development into a folder, from
/// `EMAIL_FROM`.
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
}

#[derive(Clone)]
enum Transport {
    /// Pooled connections; reconnects by itself after the server comes back.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `<uuid>.eml` file per message.
    Files(AsyncFileTransport<Tokio1Executor>),
}

impl Mailer {
    pub fn new(transport: &MailTransport, from: &str) -> anyhow::Result<Self> {
        let transport = match transport {
            MailTransport::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .context("SMTP_URL is not a valid SMTP URL")?
                    .timeout(Some(Duration::from_secs(10)))
                    .build(),
            ),
            MailTransport::Files(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create MAIL_DIR {}", dir.display()))?;
                Transport::Files(AsyncFileTransport::new(dir))
            }
        };
        let from = from.parse().context("EMAIL_FROM is not a valid mailbox")?;
        Ok(Self { transport, from })
    }

    /// Sends one outbox email. Its Message-ID is derived from the outbox row, so a message
    /// sent again after a crash between sending and marking it sent is recognisably the same.
    pub async fn send(&self, email: &OutboxEmail) -> Result<(), SendError> {
        let permanent = |error: anyhow::Error| SendError {
            permanent: true,
            error,
        };
        let to: Mailbox = email.to_address.parse().map_err(|error| {
            permanent(anyhow::Error::new(error).context("the address cannot be sent to"))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}@curbside>", email.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|error| {
                permanent(anyhow::Error::new(error).context("cannot build the email"))
            })?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map(drop)
                    .map_err(|error| SendError {
                        // 5xx: the server will never take this message (no such mailbox, refused).
                        permanent: error.is_permanent(),
                        error: anyhow::Error::new(error)
                            .context("the SMTP server did not accept the email"),
                    })
            }
            Transport::Files(files) => {
                files
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|error| SendError {
                        permanent: false,
                        error: anyhow::Error::new(error)
                            .context("cannot write the email to MAIL_DIR"),
                    })
            }
        }
    }
}

/// Delivers one outbox email, if it is due and nobody else is sending it (a job and the
/// reconciler may both try). A failure is recorded on the row, to be tried again after a
/// backoff, or given up on after the last attempt or a permanent refusal; an error is
/// trouble with PostgreSQL.
pub async fn deliver(db: &PgPool, mailer: &Mailer, outbox_id: Uuid) -> anyhow::Result<()> {
    let Some(email) = outbox::claim(&mut *db.acquire().await?, outbox_id).await? else {
        return Ok(());
    };
    match mailer.send(&email).await {
        Ok(()) => {
            outbox::mark_sent(&mut *db.acquire().await?, email.id).await?;
            tracing::info!(outbox.id = %email.id, "email sent");
        }
        Err(failure) if failure.permanent || email.attempts >= outbox::MAX_ATTEMPTS => {
            let error = failure.to_string();
            outbox::mark_given_up(&mut *db.acquire().await?, email.id, &error).await?;
            tracing::error!(outbox.id = %email.id, attempts = email.attempts, %error, "email given up on; it stays in the outbox marked failed");
        }
        Err(failure) => {
            let error = failure.to_string();
            let retry_at = chrono::Utc::now() + outbox::backoff(email.attempts);
            outbox::mark_failed(&mut *db.acquire().await?, email.id, &error, retry_at).await?;
            tracing::warn!(outbox.id = %email.id, attempts = email.attempts, %error, "email not sent; will retry");
        }
    }
    Ok(())
}
