//! The `iqs` command line.

mod access;
mod bench;
mod demo;
mod load;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

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
    /// Demo data.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Fill the store with six months of realistic reviews of 30 agents in 3 teams,
    /// through the API (deterministic for a seed; seeding again adds nothing).
    Seed(demo::SeedArgs),
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Rebuild every rollup by replaying the evaluation outbox, in one transaction:
    /// running servers keep answering with the previous figures until it commits.
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

pub fn run() -> ExitCode {
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
            eprintln!("iqs: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("iqs: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let telemetry = Telemetry::init(config.log_format, &service_name(&config.services));
        let outcome = match cli.command {
            Command::Serve(_) => serve(&config).await.map_err(|err| err.to_string()),
            Command::Migrate => migrate(&config).await.map_err(|err| err.to_string()),
            Command::Bench(command) => bench::run(command).await,
            Command::Analytics(AnalyticsCommand::Rebuild) => rebuild(&config).await,
            Command::Tenant(command) => {
                access::tenant(&*access_store(&config).await?, command).await
            }
            Command::Key(command) => access::key(&*access_store(&config).await?, command).await,
            Command::Audit(args) => access::audit(&*access_store(&config).await?, args).await,
            Command::Demo(DemoCommand::Seed(args)) => demo::seed(&config, args).await,
        };
        if let Err(err) = &outcome {
            tracing::error!(error = %err, "iqs failed");
        }
        telemetry.shutdown().await;
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("iqs: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: &Config) -> Result<(), server::StartError> {
    let server = Server::build(config).await?;
    if let Some(key) = server.first_run_key().await? {
        print_first_run(&key, server.local_addr());
    }
    server.serve(server::shutdown_signal()).await
}

fn print_first_run(key: &str, addr: std::net::SocketAddr) {
    let tenant = crate::auth::bootstrap::FIRST_TENANT;
    println!(
        "First run on an empty store: created tenant {tenant:?} and this admin key \
         (shown once; `iqs key create` makes more):\n\n    {key}\n\n\
         Try it:\n\n    grpcurl -plaintext -H 'authorization: Bearer {key}' \
         {addr} iqs.rubric.v1.RubricService/ListRubrics\n"
    );
}

async fn migrate(config: &Config) -> Result<(), server::StartError> {
    server::open_store(config).await?;
    println!("migrations applied");
    Ok(())
}

async fn access_store(config: &Config) -> Result<std::sync::Arc<dyn crate::store::Store>, String> {
    server::open_store(config)
        .await
        .map_err(|err| err.to_string())
}

async fn rebuild(config: &Config) -> Result<(), String> {
    let store = server::open_store(config)
        .await
        .map_err(|err| err.to_string())?;
    let started = std::time::Instant::now();
    let events = store.rebuild().await.map_err(|err| err.to_string())?;
    println!(
        "rebuilt analytics from {events} events in {:.1} s",
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
