//! `attune backup` (asks the running server for a consistent copy) and `attune restore` (puts a
//! backup in place of a stopped server's data directory, keeping its erasure ledger).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use attune_engine::{BACKUP_MANIFEST, ledger};

/// `attune backup DEST`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The new backup directory: inside the server's `--backup-dir`, as an absolute path or a
    /// name relative to it.
    pub dest: PathBuf,
    /// The running server.
    #[arg(long, env = "ATTUNE_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// A file holding the admin key (its first line); or set ATTUNE_ADMIN_KEY.
    #[arg(long, env = "ATTUNE_ADMIN_KEY_FILE")]
    pub admin_key_file: Option<PathBuf>,
}

/// `attune restore SRC --data DIR`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A backup directory written by `attune backup`.
    pub src: PathBuf,
    /// The data directory to restore into. The server on it must be stopped. An existing data
    /// directory is moved aside (to `DIR.before-restore-<time>`), and its erasure ledger is
    /// merged into the restored one.
    #[arg(long, env = "ATTUNE_DATA", default_value = "./attune-data")]
    pub data: PathBuf,
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let key = match &args.admin_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        None => std::env::var("ATTUNE_ADMIN_KEY").ok(),
    };
    // The server resolves the path on its side: send an absolute one when the parent exists here
    // (the usual case: the same machine), else the name as given.
    let dest = match (args.dest.parent(), args.dest.file_name()) {
        (Some(parent), Some(name)) if args.dest.is_absolute() || parent.exists() && parent != Path::new("") => {
            parent.canonicalize().map(|p| p.join(name)).unwrap_or_else(|_| args.dest.clone())
        }
        _ => args.dest.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, body) = runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/admin/backup", args.url.trim_end_matches('/')))
            .json(&serde_json::json!({ "path": dest.to_string_lossy() }));
        if let Some(key) = &key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.with_context(|| format!("reaching the server at {}", args.url))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("reading the server's answer")?;
        anyhow::Ok((status, body))
    })?;
    if !status.is_success() {
        bail!("the server refused the backup ({status}): {}", body["error"]["message"].as_str().unwrap_or("?"));
    }
    println!(
        "backup written to {} ({} events, {} records, taken at {})",
        body["path"].as_str().unwrap_or("?"),
        body["events"],
        body["records"],
        body["taken_at"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let src = &args.src;
    let manifest = std::fs::read_to_string(src.join(BACKUP_MANIFEST)).with_context(|| {
        format!("{} is not a complete backup (no {BACKUP_MANIFEST} file; was the backup interrupted?)", src.display())
    })?;
    if !manifest.starts_with("attune backup\n") {
        bail!("{} is not an attune backup", src.join(BACKUP_MANIFEST).display());
    }
    let data = &args.data;
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    // Copied beside the target first and opened there: the copy must open with this build (a
    // newer format is refused, an older one migrated), and the backup itself stays untouched.
    let staging = PathBuf::from(format!("{}.restoring-{stamp}", data.display()));
    copy_tree(src, &staging).with_context(|| format!("copying {} to {}", src.display(), staging.display()))?;
    let _ = std::fs::remove_file(staging.join(BACKUP_MANIFEST));
    if let Err(err) = attune_store::EmbeddedStore::open(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err).with_context(|| format!("opening the backup {}", src.display()));
    }
    let mut ledgers = vec![src.join(ledger::LEDGER_FILE)];
    let mut moved_aside = None;
    if data.exists() && std::fs::read_dir(data)?.next().is_some() {
        // A running server holds the data directory's lock: opening it fails then.
        if let Err(err) = attune_store::EmbeddedStore::open(data) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(err).with_context(|| {
                format!("opening {} to replace it (stop the server that uses it first)", data.display())
            });
        }
        let aside = PathBuf::from(format!("{}.before-restore-{stamp}", data.display()));
        std::fs::rename(data, &aside).with_context(|| format!("moving {} aside", data.display()))?;
        ledgers.push(aside.join(ledger::LEDGER_FILE));
        moved_aside = Some(aside);
    } else if data.exists() {
        std::fs::remove_dir(data).with_context(|| format!("replacing the empty {}", data.display()))?;
    }
    std::fs::rename(&staging, data).with_context(|| format!("moving the restored data to {}", data.display()))?;
    let entries = ledger::merge(&ledgers, &data.join(ledger::LEDGER_FILE)).context("merging the erasure ledgers")?;
    println!("restored {} into {}", src.display(), data.display());
    if let Some(aside) = moved_aside {
        println!("the previous data directory is at {} (delete it once the restore is checked)", aside.display());
    }
    println!(
        "erasure ledger: {entries} entries; people erased after the backup was taken are erased again when the server starts"
    );
    Ok(())
}

/// Copies a directory tree (files and directories), owner-only, syncing every file.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    attune_store::create_private_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}
