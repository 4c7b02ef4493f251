//! The `iqs` command line.

/// `println!` for command output, ending the process quietly when stdout is closed
/// (see [`write_stdout`]).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

mod access;
mod bench;
mod bench_autoqa;
mod bench_batch;
mod bench_calibration;
mod bench_client;
mod bench_sampling;
mod bench_webhooks;
mod bi;
mod demo;
mod demo_autoqa;
mod demo_calibration;
mod demo_program;
mod load;

use std::{
    fmt,
    io::{self, Write},
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, FlagOverrides};
use crate::server::{self, Server};
use crate::telemetry::Telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "iqs",
    version,
    about = "Internal Quality Score for customer-service QA"
)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./iqs.toml when it exists.
    #[arg(long, global = true, env = "IQS_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC services.
    #[command(after_help = "\
Where the data lives:
  DATABASE_URL   postgres://… (production) or sqlite:PATH; unset: the embedded store
  IQS_DATA_DIR   the embedded store's directory (default ./iqs-data)
  REDIS_URL      redis://… or rediss://… caches summaries; unset: in process memory
Settings: ./iqs.toml (or --config PATH), then IQS_<KEY> variables, then flags; every
key is listed in the README's Configuration section.")]
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate,
    /// Generate load against a running server.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Analytics maintenance.
    #[command(subcommand)]
    Analytics(AnalyticsCommand),
    /// Tenants.
    #[command(subcommand)]
    Tenant(access::TenantCommand),
    /// API keys.
    #[command(subcommand)]
    Key(access::KeyCommand),
    /// The audit log of writes, newest first.
    Audit(access::AuditArgs),
    /// PostgreSQL logins for BI tools (Metabase, Superset, Tableau, Power BI): each reads
    /// only its tenant's `reporting` views.
    #[command(subcommand)]
    Bi(bi::BiCommand),
    /// Demo data.
    #[command(subcommand)]
    Demo(DemoCommand),
    /// The AutoQA engine's pieces, for checking how it reads a text.
    #[command(subcommand)]
    Autoqa(AutoqaCommand),
}

#[derive(Debug, Subcommand)]
enum AutoqaCommand {
    /// Prints the VADER compound sentiment score (from -1 to 1) of each line of stdin,
    /// as the sentiment_shift rule computes it.
    Sentiment,
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Fill the store with six months of realistic reviews of 30 agents in 3 teams,
    /// through the API (deterministic for a seed; seeding again adds nothing).
    Seed(demo::SeedArgs),
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Rebuild every rollup from the evaluations (the current revision of each), in one
    /// transaction: running servers keep answering with the previous figures until it
    /// commits.
    Rebuild,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to bind [env: IQS_LISTEN_ADDR] [default: 127.0.0.1:50051]; port 0 = any free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Services to serve [env: IQS_SERVICES] [default: all]: rubric,evaluation,analytics.
    #[arg(long, value_name = "LIST")]
    services: Option<String>,
}

/// The status a shell reports for a process ended by SIGPIPE (128 + 13).
const STDOUT_CLOSED_STATUS: i32 = 141;

/// Writes one line of command output. When the reader has gone (`iqs key list | head -1`)
/// the process ends at once with the status a shell shows for SIGPIPE, as other Unix
/// tools do; `println!` panics instead.
pub(crate) fn write_stdout(line: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
            std::process::exit(STDOUT_CLOSED_STATUS)
        }
        Err(err) => {
            report(&format!("cannot write to stdout: {err}"));
            std::process::exit(1)
        }
    }
}

/// One line on stderr; a closed stderr leaves nowhere to say anything, so it is ignored.
fn report(error: &str) {
    let _ = writeln!(io::stderr(), "iqs: {error}");
}

pub fn run() -> ExitCode {
    crate::tls::install_crypto_provider();
    let cli = Cli::parse();
    let flags = match &cli.command {
        Command::Serve(args) => FlagOverrides {
            listen_addr: args.listen,
            services: args.services.clone(),
        },
        _ => FlagOverrides::default(),
    };
    let config = match config::load(cli.config.as_deref(), &flags) {
        Ok(config) => config,
        Err(err) => {
            report(&err.to_string());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    // The server's stderr is its log stream (JSON for collectors, often): its fatal
    // error is a log record there. Other commands talk to a person: a plain line.
    let logs_its_errors = matches!(cli.command, Command::Serve(_));
    let outcome = runtime.block_on(async {
        // A server logs its life; a command talks to a person, and the server `demo seed`
        // runs inside it is no news to them: warnings and errors only.
        let default_filter = match cli.command {
            Command::Serve(_) => "info,sqlx::postgres::notice=warn",
            _ => "warn,sqlx::postgres::notice=warn",
        };
        let telemetry = Telemetry::init(
            config.log_format,
            &service_name(&config.services),
            default_filter,
        );
        let outcome = match cli.command {
            Command::Serve(_) => serve(&config).await.map_err(|err| err.to_string()),
            Command::Migrate => migrate(&config).await.map_err(|err| err.to_string()),
            Command::Bench(command) => bench::run(command).await,
            Command::Analytics(AnalyticsCommand::Rebuild) => rebuild(&config).await,
            Command::Tenant(command) => {
                access::tenant(&*access_store(&config).await?, command).await
            }
            Command::Key(command) => access::key(&*existing_store(&config).await?, command).await,
            Command::Audit(args) => access::audit(&*existing_store(&config).await?, args).await,
            Command::Demo(DemoCommand::Seed(args)) => demo::seed(&config, args).await,
            Command::Bi(command) => bi::bi(&config, command).await,
            Command::Autoqa(AutoqaCommand::Sentiment) => sentiment_of_lines(),
        };
        if logs_its_errors && let Err(err) = &outcome {
            tracing::error!(error = %err, "iqs stopped");
        }
        telemetry.shutdown().await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if logs_its_errors => ExitCode::FAILURE,
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> Result<(), server::StartError> {
    let server = Server::build(config).await?;
    if let Some(key) = server.first_run_key().await? {
        print_first_run(&key, server.local_addr(), config.tls.enabled());
    }
    server.serve(server::shutdown_signal()).await
}

/// Unlike command output, a closed stdout must not stop the server: the key is then
/// only lost, and the log says how to replace it.
fn print_first_run(key: &str, addr: std::net::SocketAddr, tls: bool) {
    let tenant = crate::auth::bootstrap::FIRST_TENANT;
    let (scheme, prior_knowledge) = if tls {
        ("https", "")
    } else {
        ("http", "--http2-prior-knowledge ")
    };
    // A server on every interface is reached on this machine through loopback.
    let mut reachable = addr;
    if reachable.ip().is_unspecified() {
        reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("{scheme}://{reachable}/iqs.rubric.v1.RubricService/ListRubrics");
    // The key after `#` stays in the browser: the page keeps it in the tab's storage.
    let dashboard = format!("{scheme}://{reachable}/#key={key}");
    let printed = writeln!(
        io::stdout().lock(),
        "First run on an empty store: created tenant {tenant:?} and this admin key \
         (shown once; `iqs key create` makes more):\n\n    {key}\n\n\
         Try it with curl (JSON over HTTP):\n\n    \
         curl -H 'authorization: Bearer {key}' -H 'content-type: application/json' \
         -d '{{}}' {url}\n\n\
         or with a gRPC client (buf from npm, or `.ci/buf` in a clone of IQS):\n\n    \
         buf curl --protocol grpc {prior_knowledge}-H 'authorization: Bearer {key}' \
         -d '{{}}' {url}\n\n\
         The dashboard, in a browser on this machine:\n\n    {dashboard}\n"
    );
    if let Err(err) = printed {
        let key_id = crate::auth::keys::parse(key).map(|parsed| parsed.key_id);
        tracing::warn!(
            %err,
            ?key_id,
            "cannot show the first-run admin key on stdout; revoke it and make another with \
             `iqs key create --tenant default --role admin`"
        );
    }
}

/// One compound score per line of stdin, full precision.
fn sentiment_of_lines() -> Result<(), String> {
    for line in io::stdin().lines() {
        let line = line.map_err(|err| format!("stdin: {err}"))?;
        say!("{}", crate::domain::autoqa::compound(&line));
    }
    Ok(())
}

async fn migrate(config: &Config) -> Result<(), server::StartError> {
    server::open_store(config).await?;
    say!("migrations applied");
    Ok(())
}

async fn access_store(config: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>, String> {
    server::open_store(config)
        .await
        .map_err(|err| err.to_string())
}

/// The store of a command that reads or changes what is already stored: on the embedded
/// store, one that does not exist yet is an error, not a new empty store in the
/// working directory.
async fn existing_store(
    config: &Config,
) -> Result<std::sync::Arc<dyn crate::store::Store>, String> {
    if config.database_url.is_none() {
        let file = config.data_dir.join(crate::store::sqlite::EMBEDDED_FILE);
        if !file.exists() {
            return Err(format!(
                "no IQS data at {}: run this where `iqs serve` keeps its data \
                 (IQS_DATA_DIR, default ./iqs-data), or set DATABASE_URL",
                file.display()
            ));
        }
    }
    access_store(config).await
}

async fn rebuild(config: &Config) -> Result<(), String> {
    let store = existing_store(config).await?;
    let started = std::time::Instant::now();
    let evaluations = store.rebuild().await.map_err(|err| err.to_string())?;
    say!(
        "rebuilt analytics from {evaluations} evaluations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The default OpenTelemetry service name: `iqs` for every service, else `iqs-` and the
/// services this process serves (`iqs-evaluation`, `iqs-rubric`, …).
fn service_name(services: &crate::config::ServiceSet) -> String {
    if *services == crate::config::ServiceSet::all() {
        "iqs".to_owned()
    } else {
        format!("iqs-{}", services.to_string().replace(',', "-"))
    }
}
