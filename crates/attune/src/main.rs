//! attune: one binary — `serve` the API, run the `demo`, `import` events, `eval` models offline,
//! `bench` the hot paths. Everything here is wiring: the work happens in the library crates.

mod backup;
mod bench;
mod bench_server;
mod cmd_bench_results;
mod cmd_bench_scale;
mod cmd_bench_soak;
mod cmd_bench_train;
mod cmd_eval;
mod cmd_eval_bandit;
mod demo;
mod demo_sim;
mod demo_site;
mod import;
mod import_csv;
mod replay;
mod serve;

use clap::{Parser, Subcommand};

// Ingest and decide allocate many small, short-lived values; mimalloc measured faster than the
// system allocator on `attune bench ingest` (see the commit that added it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tells the allocator to keep memory it freed instead of returning it to the operating system
/// after a second. For batch work (`attune import`, and the import part of `attune bench ingest`)
/// that frees and reallocate hundreds of
/// megabytes per batch: returning and re-faulting that memory cost about 15% of `attune import`'s
/// CPU (60,000 page faults per million events; 800 with this). The server keeps the default.
#[allow(unsafe_code)]
pub(crate) fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc.h (v2 and v3): -1 never purges.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: mimalloc's exported option setter (linked in through the `mimalloc` crate, which is
    // the global allocator); it takes plain integers and is safe to call at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Returns the memory the allocator holds freed to the operating system, on this thread and on
/// every thread of the global rayon pool (the training's parallel fits run there). mimalloc
/// purges a thread's freed pages only when that thread allocates or frees again, and the pool's
/// threads sleep after a training: without this, the working memory they freed stays resident
/// until the next training (hundreds of MiB at 1M people; docs/scale.md).
#[allow(unsafe_code)]
pub(crate) fn return_freed_memory() {
    unsafe extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: mimalloc's exported collection call (linked in through the `mimalloc` crate, the
    // global allocator); it only frees memory no live allocation uses, on the calling thread.
    let collect = || unsafe { mi_collect(true) };
    rayon::broadcast(|_| collect());
    collect();
}

/// Attune: self-hosted, privacy-first personalization.
#[derive(Debug, Parser)]
#[command(name = "attune", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(serve::ServeArgs),
    /// Load a demo catalog and simulated audience, then serve with the console.
    Demo(demo::DemoArgs),
    /// Import events (JSON lines) or an interactions.tsv/items.tsv dataset into a data directory.
    Import(import::ImportArgs),
    /// Offline evaluation of the models on a dataset (EVAL.md protocol); `eval bandit DIR` runs
    /// the off-policy evaluation of the presentation bandit on the Open Bandit Dataset.
    Eval(cmd_eval::EvalArgs),
    /// Ask a running server for a consistent backup of its data (embedded store).
    Backup(backup::BackupArgs),
    /// Restore a backup into a (stopped) server's data directory, keeping its erasures.
    Restore(backup::RestoreArgs),
    /// Benchmarks: ingest, decide, train, scale, soak.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,fjall=warn,lsm_tree=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Import(args) => {
            keep_freed_memory();
            import::run(args)
        }
        Command::Eval(mut args) => match args.command.take() {
            Some(cmd_eval::EvalCommand::Bandit(bandit)) => cmd_eval_bandit::run(bandit),
            None => cmd_eval::run(args),
        },
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
        Command::Bench(command) => bench::run(command),
    }
}
