//! The `surge` binary: CLI, configuration, wiring, graceful shutdown.

mod bench_http;
mod bench_queue;
mod bench_report;
mod cli;
mod config;
mod crawl;
mod crawl_broker;
mod fetch;
mod kinds;
mod logging;
mod queue;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("surge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => match config::ServeSettings::resolve(args) {
            Ok(settings) => runtime.block_on(serve::run(settings)),
            Err(e) => {
                // Bad configuration: say what and how to fix it; exit 2 like
                // clap's own usage errors.
                eprintln!("surge serve: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Worker(args) => match queue::worker_settings(&args) {
            Ok(config) => runtime.block_on(queue::run_worker(args, config)),
            Err(e) => {
                eprintln!("surge: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Task(command) => runtime.block_on(queue::run_task(command)),
        Command::Schedule(command) => runtime.block_on(queue::run_schedule(command)),
        Command::Bench(BenchCommand::Queue(args)) => runtime.block_on(bench_queue::run(args)),
        Command::Bench(BenchCommand::Http(args)) => match bench_http::prepare(*args) {
            Ok(prepared) => runtime.block_on(bench_http::run(prepared)),
            Err(e) => {
                eprintln!("surge bench http: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Bench(BenchCommand::Report(args)) => bench_report::run(args),
        Command::Crawl(args) => match crawl::Settings::resolve(args) {
            Ok(settings) => return runtime.block_on(crawl::run(settings)),
            Err(e) => {
                eprintln!("surge crawl: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Fetch(args) => match fetch::Settings::resolve(args) {
            Ok(settings) => return runtime.block_on(fetch::run(settings)),
            Err(e) => {
                eprintln!("surge fetch: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("surge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
