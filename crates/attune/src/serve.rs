//! `attune serve`: open the store and the engine, then serve the API until Ctrl-C.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use attune_engine::{Engine, EngineConfig, Scheduler, SchedulerConfig, SystemClock};
use attune_server::AppState;
use attune_store::{EmbeddedOptions, EmbeddedStore};

/// Where and how to serve.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ATTUNE_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Data directory of the embedded store.
    #[arg(long, env = "ATTUNE_DATA", default_value = "./attune-data")]
    pub data: PathBuf,
    /// A PostgreSQL URL (`postgres://user@host:5432/db`) to use instead of the embedded store.
    #[arg(long, env = "ATTUNE_STORE")]
    pub store: Option<String>,
    /// Admin key (at least 32 characters). Without one the server runs open, and only on a
    /// loopback address. Prefer the environment variable or `--admin-key-file`: a value on the
    /// command line shows in `ps`.
    #[arg(long, env = "ATTUNE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// A file holding the admin key (its first line); made owner-only (0600) if it is not.
    #[arg(long, env = "ATTUNE_ADMIN_KEY_FILE", conflicts_with = "admin_key")]
    pub admin_key_file: Option<PathBuf>,
    /// Seconds a client has, from a request's first byte, to send its headers.
    #[arg(long, env = "ATTUNE_HEADER_TIMEOUT", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a client has, after its headers, to send the request body.
    #[arg(long, env = "ATTUNE_BODY_TIMEOUT", default_value_t = 30)]
    pub body_timeout: u64,
    /// Seconds a kept-alive connection may sit idle between requests.
    #[arg(long, env = "ATTUNE_IDLE_TIMEOUT", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Open connections at most; more wait until one closes.
    #[arg(long, env = "ATTUNE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Failed authentications (unknown keys, console sign-ins) allowed per client address in 5
    /// minutes before its requests are answered 429 (0: no limit).
    #[arg(long, env = "ATTUNE_AUTH_FAILURES", default_value_t = 30)]
    pub auth_failures: u32,
    /// Requests per second allowed per scoped key (0: no limit).
    #[arg(long, env = "ATTUNE_RATE_LIMIT", default_value_t = 2000.0)]
    pub rate_limit: f64,
    /// Requests per second allowed per browser key and visitor address, with a burst of three
    /// seconds' worth (0: no limit). Separate from `--rate-limit`: a browser key is public, and
    /// this keeps one visitor from spending everyone's budget.
    #[arg(long, env = "ATTUNE_BROWSER_RATE_LIMIT", default_value_t = attune_server::browser::BROWSER_RATE)]
    pub browser_rate_limit: f64,
    /// Share of a feed drawn from declared goals before a person has a history (0–1). Once
    /// there is a history, the served ranker's learned weights decide.
    #[arg(long, env = "ATTUNE_GOALS_SHARE", default_value_t = 0.6, value_parser = parse_share)]
    pub goals_share: f32,
    /// Seconds between background trainings (models are also trained at start).
    #[arg(long, env = "ATTUNE_TRAIN_EVERY", default_value_t = 3600)]
    pub train_every: u64,
    /// With `--store postgres://`: seconds between syncs with the other servers on the database
    /// (their events, items, keys, consent, ...; see attune-engine `cluster`).
    #[arg(long, env = "ATTUNE_SYNC_EVERY", default_value_t = 1.0)]
    pub sync_every: f64,
    /// A directory `POST /v1/admin/backup` (`attune backup`) may write backups into. Without
    /// one, backups are off.
    #[arg(long, env = "ATTUNE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// The erasure ledger file (people erased, as keyed hashes; erased again when a restored
    /// backup brings them back). Default: `erasure-ledger` in the data directory; with
    /// `--store postgres://` none unless given (keep it outside what the database's backups
    /// restore; see docs/operations.md).
    #[arg(long, env = "ATTUNE_ERASURE_LEDGER")]
    pub erasure_ledger: Option<PathBuf>,
}

fn parse_share(text: &str) -> Result<f32, String> {
    match text.trim().parse::<f32>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err("expected a share between 0 and 1".into()),
    }
}

/// Opens the embedded store and the engine over it.
pub fn open_engine(data: &std::path::Path) -> anyhow::Result<Arc<Engine>> {
    open_engine_with(data, EngineConfig::default(), EmbeddedOptions::default())
}

/// Opens the engine over the embedded store in `data`, tuned for a bulk load (`attune import`).
pub fn open_engine_for_bulk_load(data: &std::path::Path) -> anyhow::Result<Arc<Engine>> {
    open_engine_with(data, EngineConfig::default(), EmbeddedOptions { bulk_load: true })
}

fn open_engine_with(
    data: &std::path::Path,
    config: EngineConfig,
    options: EmbeddedOptions,
) -> anyhow::Result<Arc<Engine>> {
    let store = EmbeddedStore::open_with(data, options)
        .with_context(|| format!("opening the data directory {} (is another attune using it?)", data.display()))?;
    let erasure_ledger = config.erasure_ledger.clone().or_else(|| Some(data.join(attune_engine::ledger::LEDGER_FILE)));
    engine_over(Arc::new(store), EngineConfig { erasure_ledger, ..config })
}

/// Opens the store the arguments name (PostgreSQL with `--store`, else the embedded one) and the
/// engine over it. Returns the PostgreSQL store too when there is one: several servers may share
/// it, so the engine runs with cluster sync on and the caller elects the trainer with the store's
/// training lock.
pub fn open_engine_for(args: &ServeArgs) -> anyhow::Result<(Arc<Engine>, Option<Arc<attune_store::PostgresStore>>)> {
    let config = EngineConfig {
        revelation: attune_engine::decide::Revelation { goals_share: args.goals_share },
        erasure_ledger: args.erasure_ledger.clone(),
        ..EngineConfig::default()
    };
    match &args.store {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let (engine, store) = open_engine_postgres(url, config)?;
            Ok((engine, Some(store)))
        }
        Some(other) => bail!("--store takes a postgres:// URL, not `{other}` (the embedded store uses --data)"),
        None => Ok((open_engine_with(&args.data, config, EmbeddedOptions::default())?, None)),
    }
}

/// Opens the engine over the PostgreSQL database at `url`, with cluster sync on (other servers may
/// share the database).
pub fn open_engine_postgres(
    url: &str,
    config: EngineConfig,
) -> anyhow::Result<(Arc<Engine>, Arc<attune_store::PostgresStore>)> {
    let store = Arc::new(attune_store::PostgresStore::connect(url).context("connecting to PostgreSQL")?);
    let config = EngineConfig { cluster: true, ..config };
    let engine = engine_over(Arc::clone(&store) as Arc<dyn attune_store::Store>, config)?;
    Ok((engine, store))
}

fn engine_over(store: Arc<dyn attune_store::Store>, config: EngineConfig) -> anyhow::Result<Arc<Engine>> {
    let engine = Engine::open(store, Arc::new(SystemClock), config).context("loading the engine state")?;
    Ok(Arc::new(engine))
}

/// The shortest admin key accepted, in characters.
pub const MIN_ADMIN_KEY_CHARS: usize = 32;

/// The admin key from `--admin-key`/`ATTUNE_ADMIN_KEY` or `--admin-key-file`, warning when it
/// was given on the command line (where `ps` shows it).
pub fn resolve_admin_key(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &args.admin_key_file {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .with_context(|| format!("reading the admin key file {}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                eprintln!("warning: {} was readable by others; making it owner-only (0600)", path.display());
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("tightening {}", path.display()))?;
            }
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the admin key file {}", path.display()))?;
        let key = text.lines().next().unwrap_or_default().trim().to_owned();
        if key.is_empty() {
            bail!("the admin key file {} is empty", path.display());
        }
        return Ok(Some(key));
    }
    if args.admin_key.is_some() && admin_key_on_command_line(std::env::args()) {
        eprintln!(
            "warning: --admin-key on the command line is visible to every user of this machine (ps); \
             use ATTUNE_ADMIN_KEY or --admin-key-file instead"
        );
    }
    Ok(args.admin_key.clone())
}

/// Whether the arguments hold `--admin-key` (not `--admin-key-file`).
pub fn admin_key_on_command_line(args: impl IntoIterator<Item = String>) -> bool {
    args.into_iter().any(|arg| arg == "--admin-key" || arg.starts_with("--admin-key="))
}

/// Checks the auth rule of API.md: no admin key → loopback only.
pub fn check_listen(listen: &SocketAddr, admin_key: Option<&str>) -> anyhow::Result<()> {
    if let Some(key) = admin_key
        && key.chars().count() < MIN_ADMIN_KEY_CHARS
    {
        bail!(
            "the admin key (ATTUNE_ADMIN_KEY, --admin-key-file) must be at least {MIN_ADMIN_KEY_CHARS} characters; \
             this one has {}. Make one with: openssl rand -hex 32",
            key.chars().count()
        );
    }
    if admin_key.is_none() {
        if !listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {listen} without an admin key: set ATTUNE_ADMIN_KEY (or listen on 127.0.0.1 for open local use)"
            );
        }
        eprintln!();
        eprintln!("  !!! OPEN MODE: no ATTUNE_ADMIN_KEY is set. Every request on {listen} is allowed without a key.");
        eprintln!("  !!! This is for local development only. Set ATTUNE_ADMIN_KEY before exposing Attune.");
        eprintln!("  !!! Only requests to localhost, 127.x or [::1] are answered; keys minted now stop working");
        eprintln!("  !!! once an admin key is set (mint them again with the admin key).");
        eprintln!();
    }
    Ok(())
}

/// Binds and serves until Ctrl-C (or until `shutdown` resolves).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(listener, state, attune_server::server::ServerLimits::default(), shutdown).await
}

/// [`serve_until`] with connection limits and timeouts.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: attune_server::server::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    attune_server::server::serve(listener, attune_server::app(state), limits, shutdown).await.context("serving")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}

/// The connection limits and timeouts the arguments ask for.
pub fn server_limits(args: &ServeArgs) -> anyhow::Result<attune_server::server::ServerLimits> {
    if args.header_timeout == 0 || args.body_timeout == 0 || args.idle_timeout == 0 || args.max_connections == 0 {
        bail!("--header-timeout, --body-timeout, --idle-timeout and --max-connections take positive numbers");
    }
    Ok(attune_server::server::ServerLimits {
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        body_timeout: std::time::Duration::from_secs(args.body_timeout),
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout),
        max_connections: args.max_connections,
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let admin_key = resolve_admin_key(&args)?;
    check_listen(&args.listen, admin_key.as_deref())?;
    if !(args.sync_every > 0.0 && args.sync_every.is_finite()) {
        bail!("--sync-every takes a positive number of seconds");
    }
    for (flag, rate) in [("--rate-limit", args.rate_limit), ("--browser-rate-limit", args.browser_rate_limit)] {
        if !(rate >= 0.0 && rate.is_finite()) {
            bail!("{flag} takes a number of requests per second, 0 for no limit");
        }
    }
    let limits = server_limits(&args)?;
    let (engine, _shared_store) = open_engine_for(&args)?;
    let state = AppState::new(Arc::clone(&engine), admin_key.as_deref(), args.rate_limit)
        .with_auth_failures(args.auth_failures, attune_server::AUTH_FAILURE_WINDOW)
        .with_browser_rate(args.browser_rate_limit, (3.0 * args.browser_rate_limit).max(10.0));
    let state = match &args.backup_dir {
        Some(dir) => {
            attune_store::create_private_dir(dir)
                .with_context(|| format!("creating the backup directory {}", dir.display()))?;
            state.with_backup_dir(dir.clone())
        }
        None => state,
    };
    // Every background job (training, the trainer election, sync, the flush, the sweeps) is
    // the engine scheduler's.
    let schedule = SchedulerConfig {
        after_training: Some(crate::return_freed_memory),
        ..SchedulerConfig::serving(
            std::time::Duration::from_secs(args.train_every),
            std::time::Duration::from_secs_f64(args.sync_every),
        )
    };
    let scheduler = Arc::new(Scheduler::start(Arc::clone(&engine), schedule));
    let state = state.with_scheduler(Arc::clone(&scheduler));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let address = listener.local_addr()?;
        tracing::info!(%address, data = %args.data.display(), "attune is serving");
        println!("attune listening on http://{address}");
        let served = serve_with(listener, state, limits, shutdown_signal()).await;
        // Stops the jobs and persists the decision log once more.
        tokio::task::spawn_blocking(move || scheduler.shutdown()).await.context("stopping the scheduler")?;
        served
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_keys_are_long_and_open_mode_is_loopback_only() {
        let loopback: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        let anywhere: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let short = "a".repeat(MIN_ADMIN_KEY_CHARS - 1);
        let error = check_listen(&anywhere, Some(&short)).unwrap_err().to_string();
        assert!(error.contains("at least 32 characters"), "{error}");
        assert!(check_listen(&anywhere, Some("0123456789abcdef")).is_err(), "16 characters are no longer enough");
        assert!(check_listen(&anywhere, Some(&"a".repeat(MIN_ADMIN_KEY_CHARS))).is_ok());
        assert!(check_listen(&anywhere, None).is_err());
        assert!(check_listen(&loopback, None).is_ok());
    }

    #[test]
    fn an_admin_key_on_the_command_line_is_noticed() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(admin_key_on_command_line(args(&["attune", "serve", "--admin-key", "k"])));
        assert!(admin_key_on_command_line(args(&["attune", "serve", "--admin-key=k"])));
        assert!(!admin_key_on_command_line(args(&["attune", "serve", "--admin-key-file", "/run/k"])));
        assert!(!admin_key_on_command_line(args(&["attune", "serve"])));
    }

    #[test]
    fn the_admin_key_file_is_read_and_made_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.key");
        std::fs::write(&path, format!("{}\n", "k".repeat(40))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let args = <ServeCli as clap::Parser>::parse_from(["serve", "--admin-key-file", path.to_str().unwrap()]).args;
        assert_eq!(resolve_admin_key(&args).unwrap(), Some("k".repeat(40)));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[derive(clap::Parser)]
    struct ServeCli {
        #[command(flatten)]
        args: ServeArgs,
    }
}
