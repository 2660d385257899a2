//! The command line of the `fake-stripe` binary: the imitation as a process of its own, for
//! development and for tests that drive a separate process.

use std::net::SocketAddr;

use crate::{FakeStripe, FakeStripeOptions};

/// A local imitation of Stripe for development and tests (never in production).
#[derive(Debug, clap::Parser)]
#[command(name = "fake-stripe", version, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Save a test card on the SetupIntent of a booking, as Stripe.js does in the browser
    /// (then `POST /v1/reservations/{id}/confirm`, or wait for the webhook).
    SaveCard {
        /// The booking's `payment.client_secret` (`seti_…_secret_…`).
        client_secret: String,
        /// A test card: pm_card_visa, pm_card_mastercard, pm_card_chargeDeclined, …
        #[arg(long, default_value = "pm_card_visa")]
        card: String,
        /// Where the imitation listens.
        #[arg(long, default_value = "http://127.0.0.1:12111/")]
        api: String,
    },
}

/// Serving the imitation (the default when no subcommand is given).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    pub bind: SocketAddr,
    /// Where to post events, e.g. http://127.0.0.1:8080/v1/webhooks/stripe.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Secret the events are signed with; the API's STRIPE_WEBHOOK_SECRET must match.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", default_value = crate::DEFAULT_WEBHOOK_SECRET, hide_env_values = true)]
    pub webhook_secret: String,
}

/// Refuses to run where real money moves.
pub fn ensure_not_production(app_env: Option<&str>) -> anyhow::Result<()> {
    anyhow::ensure!(
        app_env.map(str::trim) != Some("production"),
        "fake-stripe is an imitation of Stripe for development and tests; it refuses to \
         run with APP_ENV=production"
    );
    Ok(())
}

/// Serves until `shutdown` resolves, or runs the subcommand given.
pub async fn run(
    args: Args,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    match args.command {
        None => serve(args.serve, shutdown).await,
        Some(Command::SaveCard {
            client_secret,
            card,
            api,
        }) => save_card(&client_secret, &card, &api).await,
    }
}

/// Prints the base URL on standard output once listening, so a script or test that
/// started the process knows where it is.
async fn serve(
    args: ServeArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // APP_ENV may come from `.env`, as it does for the API.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        anyhow::bail!("cannot read .env: {error}");
    }
    ensure_not_production(std::env::var("APP_ENV").ok().as_deref())?;
    let fake = FakeStripe::start(FakeStripeOptions {
        bind: args.bind,
        webhook_url: args.webhook_url.clone(),
        webhook_secret: args.webhook_secret,
        ..FakeStripeOptions::default()
    })
    .await
    .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", args.bind))?;
    tracing::info!(
        base_url = %fake.base_url(),
        webhook_url = args.webhook_url.as_deref().unwrap_or("(none)"),
        "fake Stripe listening"
    );
    // The one line of output of this command, for whoever started it.
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fake-stripe listening on {}", fake.base_url())?;
    stdout.flush()?;
    drop(stdout);
    shutdown.await;
    Ok(())
}

/// `save-card`: prints the SetupIntent's new status, or fails with Stripe's message.
async fn save_card(client_secret: &str, card: &str, api: &str) -> anyhow::Result<()> {
    let base_url = format!("{}/", api.trim_end_matches('/'));
    let (status, body) = crate::save_card(&reqwest::Client::new(), &base_url, client_secret, card)
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach the imitation at {base_url}: {error}"))?;
    if status != 200 {
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the imitation refused the card ({status}): {message}");
    }
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "{}: {}, card {}",
        body["id"].as_str().unwrap_or_default(),
        body["status"].as_str().unwrap_or_default(),
        body["payment_method"].as_str().unwrap_or_default()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_is_refused() {
        assert!(ensure_not_production(Some("production")).is_err());
        assert!(ensure_not_production(Some(" production ")).is_err());
        assert!(ensure_not_production(Some("development")).is_ok());
        assert!(ensure_not_production(None).is_ok());
    }
}
