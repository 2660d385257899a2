//! Email: every change of a reservation is announced by a message written to the outbox in
//! the same transaction as the change (`outbox`), then delivered over SMTP by a job or the
//! reconciler (`Mailer`). Times are shown in New York time.

pub mod outbox;
mod templates;

use std::time::Duration;

use anyhow::Context as _;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

pub use outbox::OutboxEmail;
pub use templates::Notice;

/// Delivers outbox emails over SMTP (`SMTP_URL`, from `EMAIL_FROM`).
#[derive(Clone)]
pub struct Mailer {
    /// Pooled connections; reconnects by itself after the server comes back.
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(smtp_url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .context("SMTP_URL is not a valid SMTP URL")?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from.parse().context("EMAIL_FROM is not a valid mailbox")?;
        Ok(Self { transport, from })
    }

    /// Sends one outbox email. Its Message-ID is derived from the outbox row, so a message
    /// sent again after a crash between sending and marking it sent is recognisably the same.
    pub async fn send(&self, email: &OutboxEmail) -> anyhow::Result<()> {
        let to: Mailbox = email
            .to_address
            .parse()
            .with_context(|| format!("outbox email {} has an invalid address", email.id))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(email.subject.clone())
            .message_id(Some(format!("<{}@curbside>", email.id)))
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .context("cannot build the email")?;
        self.transport
            .send(message)
            .await
            .context("the SMTP server did not accept the email")?;
        Ok(())
    }
}
