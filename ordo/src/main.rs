//! `ordo`: the one binary of Ordo. Parsing and dispatch only; the work lives in the crates.

// JSON-heavy request handling allocates a lot; mimalloc is measurably faster than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod cli;
mod jobs;
mod logs;
mod replay;
mod serve;
mod services;
mod telemetry;

use clap::Parser;
use cli::{Cli, Command, ServeRole};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(&cli.global.log_format);
    let result = match cli.command {
        Command::Dev {
            relay,
            projector,
            query,
            worker,
            ingest,
            no_worker,
            no_relay,
            no_clickhouse,
        } => {
            let relay = (!no_relay).then_some(&relay);
            let worker = (!no_worker).then_some(&worker);
            let roles = serve::DevRoles {
                relay,
                projector: &projector,
                query: &query,
                worker,
                ingest: &ingest,
                clickhouse: !no_clickhouse,
            };
            serve::dev(&cli.global, roles).await
        }
        Command::Serve(ServeRole::Ingest { ingest }) => serve::ingest(&cli.global, &ingest).await,
        Command::Serve(ServeRole::Api) => serve::api(&cli.global).await,
        Command::Serve(ServeRole::Query { query }) => serve::query(&cli.global, &query).await,
        Command::Serve(ServeRole::Relay {
            relay,
            metrics_addr,
        }) => serve::relay(&cli.global, &relay, metrics_addr).await,
        Command::Serve(ServeRole::Projector {
            projector,
            metrics_addr,
        }) => serve::projector(&cli.global, &projector, metrics_addr).await,
        Command::Serve(ServeRole::Worker {
            worker,
            metrics_addr,
        }) => serve::worker(&worker, metrics_addr).await,
        Command::Serve(ServeRole::Reaper { metrics_addr }) => {
            serve::reaper(&cli.global, metrics_addr).await
        }
        Command::Migrate => serve::migrate(&cli.global).await,
        Command::Bench(bench) => bench::run(&cli.global, bench).await,
        Command::Jobs(cli::JobsCommand::Submit(args)) => jobs::submit(&args).await,
        Command::Logs(cli::LogsCommand::Search(args)) => logs::search(&args).await,
        Command::Replay(args) => replay::run(&cli.global, &args).await,
        Command::Services(args) => services::list(&cli.global, &args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
