use anyhow::Context as _;
use clap::{Parser, Subcommand};
use curbside::app::Application;
use curbside::auth::{db as accounts, model::Email};
use curbside::config::{AppEnv, Config};
use curbside::payments::fake_stripe;
use curbside::{db, shutdown, telemetry};

/// Curbside: find, reserve and pay for on-street parking.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations, then serve the HTTP API on BIND_ADDR.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Give an existing account the operator role.
    CreateOperator {
        /// The account's email address.
        email: String,
    },
    /// Serve a local imitation of Stripe for development and tests (never in production).
    FakeStripe(fake_stripe::cli::Args),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The imitation of Stripe needs none of the API's settings (nor its database).
    if let Command::FakeStripe(args) = cli.command {
        telemetry::init(AppEnv::Development);
        return match fake_stripe::cli::run(args, shutdown::signal()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    telemetry::init(config.app_env);
    match run(cli.command, config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let pool = db::connect(&config).await?;
    match command {
        Command::Serve => {
            db::migrate(&pool).await?;
            let app = Application::build(config, pool).await?;
            tracing::info!(addr = %app.local_addr(), "serving");
            app.run_until(shutdown::signal()).await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::CreateOperator { email } => {
            let email = Email::parse(&email)
                .map_err(|error| anyhow::anyhow!("{email:?} {}", error.message))?;
            let mut conn = pool.acquire().await?;
            let found = accounts::make_operator(&mut conn, &email)
                .await
                .context("cannot update the account")?;
            anyhow::ensure!(
                found,
                "no account with the email {}; sign up first",
                email.as_str()
            );
            tracing::info!(email = email.as_str(), "account is now an operator");
        }
        Command::FakeStripe(_) => unreachable!("handled before the configuration is read"),
    }
    Ok(())
}
