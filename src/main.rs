use anyhow::Context as _;
use clap::{Parser, Subcommand};
use curbside::app::Application;
use curbside::auth::{db as accounts, model::Email};
use curbside::config::Config;
use curbside::spots::import::{RateTable, import_meters};
use curbside::state::AppState;
use curbside::{db, health, jobs, redis_pool, shutdown, spots, telemetry};

/// mimalloc rather than glibc's malloc: the API allocates many small short-lived objects
/// per request, and glibc keeps each 19 MiB argon2 block in a per-thread arena for ever,
/// which grew the process past 500 MB under a burst of sign-ins (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Curbside: find, reserve and pay for on-street parking.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    WithSettings(AppCommand),
    /// Exit 0 if the server on BIND_ADDR answers /healthz (for container health checks).
    Healthcheck,
}

/// The commands that read the API's settings and connect to PostgreSQL.
#[derive(Subcommand)]
enum AppCommand {
    /// Apply migrations, then serve the HTTP API on BIND_ADDR, with the job workers and the
    /// reconciler in the same process.
    Serve {
        /// Serve the API only; run `curbside worker` processes for the jobs.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run the job workers and the reconciler only (any number may run against one Redis).
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import NYC's parking meters CSV (NYC Open Data dataset 693u-uax6) into spots.
    ImportMeters {
        /// Path of the CSV export, plain or gzip-compressed; without it, the snapshot
        /// compiled into this binary.
        csv: Option<std::path::PathBuf>,
        /// Import only into a database that has no spots yet (a first start).
        #[arg(long)]
        if_empty: bool,
        /// Hourly rate of a borough in cents, e.g. `--rate Manhattan=500`; repeatable.
        #[arg(long = "rate", value_name = "BOROUGH=CENTS")]
        rates: Vec<String>,
        /// Hourly rate in cents for boroughs the table does not name.
        #[arg(long, value_name = "CENTS")]
        default_rate: Option<i32>,
    },
    /// Give an existing account the operator role.
    CreateOperator {
        /// The account's email address.
        email: String,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Development settings may come from `.env`, read here once for every command. A
    // missing file is normal (production, CI); a broken one is not silently ignored.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("configuration error: .env: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let command = match cli.command {
        // The health check needs none of the API's settings.
        Command::Healthcheck => return exit_code(healthcheck().await),
        Command::WithSettings(command) => command,
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    telemetry::init(config.app_env);
    let result = run(command, config).await;
    if let Err(error) = &result {
        tracing::error!("{error:#}");
    }
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `BIND_ADDR` as the server reads it, without the rest of the configuration.
async fn healthcheck() -> anyhow::Result<()> {
    let bind_addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let bind_addr = bind_addr
        .trim()
        .parse()
        .with_context(|| format!("BIND_ADDR `{bind_addr}` is not an address"))?;
    health::probe(bind_addr).await
}

async fn run(command: AppCommand, config: Config) -> anyhow::Result<()> {
    let pool = db::connect(&config).await?;
    match command {
        AppCommand::Serve { no_worker } => {
            db::migrate(&pool).await?;
            let app = Application::build(config, pool).await?;
            redis_pool::warn_if_unreachable(&app.state().config, &app.state().redis).await;
            let stop = shutdown::on_signal();
            let workers = if no_worker {
                None
            } else {
                let jobs_state = app
                    .state()
                    .with_pool(db::connect(app.state().config.as_ref()).await?);
                Some(tokio::spawn(jobs::run(jobs_state, stop.clone())))
            };
            let base = format!("http://{}", app.local_addr());
            tracing::info!(addr = %app.local_addr(), "serving the API on {base} (docs at {base}/docs)");
            app.run_until(stop.clone().cancelled_owned()).await?;
            if let Some(workers) = workers {
                stop.cancel();
                workers.await.context("the job workers panicked")?;
            }
            tracing::info!("stopped");
        }
        AppCommand::Worker => {
            db::migrate(&pool).await?;
            let state = AppState::new(config, pool)?;
            redis_pool::warn_if_unreachable(&state.config, &state.redis).await;
            tracing::info!("working");
            jobs::run(state, shutdown::on_signal()).await;
            tracing::info!("stopped");
        }
        AppCommand::Migrate => {
            db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        AppCommand::ImportMeters {
            csv,
            if_empty,
            rates,
            default_rate,
        } => {
            db::migrate(&pool).await?;
            let mut table = RateTable::default();
            for spec in &rates {
                table.set(spec)?;
            }
            if let Some(cents) = default_rate {
                anyhow::ensure!(
                    (0..=100_000).contains(&cents),
                    "--default-rate must be 0 to 100000 cents"
                );
                table.default_cents = cents;
            }
            if if_empty && spots::import::has_spots(&mut *pool.acquire().await?).await? {
                tracing::info!("spots exist already; nothing imported (--if-empty)");
                return Ok(());
            }
            match csv {
                Some(path) => {
                    let file = std::fs::File::open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    import_and_report(&pool, std::io::BufReader::new(file), &table).await?;
                }
                None => {
                    eprintln!("importing the NYC meter snapshot built into this binary");
                    import_and_report(&pool, spots::import::NYC_SNAPSHOT, &table).await?;
                }
            }
        }
        AppCommand::CreateOperator { email } => {
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
    }
    Ok(())
}

/// Runs the import and prints its report: the summary on stdout, each skipped row on stderr.
async fn import_and_report(
    pool: &sqlx::PgPool,
    input: impl std::io::Read,
    rates: &RateTable,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let report = import_meters(&mut conn, input, rates, |done, total| {
        eprintln!("imported {done}/{total} rows");
    })
    .await?;
    for (line, reason) in &report.skipped {
        eprintln!("skipped line {line}: {reason}");
    }
    println!(
        "inserted {}, updated {}, unchanged {}, skipped {}, unparsed rules {} (given {} minutes)",
        report.inserted,
        report.updated,
        report.unchanged,
        report.skipped.len(),
        report.unparsed_rules,
        curbside::spots::import::DEFAULT_MAX_STAY_MINUTES,
    );
    Ok(())
}
