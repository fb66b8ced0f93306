//! `POST /v1/admin/backup`: a consistent copy of the embedded store, taken by the running server
//! (the only process that may open its data directory) without stopping ingest.

use std::path::{Component, Path, PathBuf};

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::{
    AppState,
    auth::{Admin, Auth},
    blocking,
    error::{ApiError, ApiResult, Code, ErrorBody},
    extract::ApiJson,
};

/// `POST /v1/admin/backup` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupIn {
    /// Where to write the backup: a new directory, named relative to the server's backup
    /// directory (`attune serve --backup-dir`), or an absolute path inside it.
    pub path: String,
}

/// `POST /v1/admin/backup` answer.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BackupOut {
    /// The backup directory written (absolute).
    pub path: String,
    /// Events copied.
    pub events: u64,
    /// Records copied.
    pub records: u64,
    /// When the snapshot was taken, RFC 3339.
    pub taken_at: String,
}

/// Write a consistent point-in-time copy of the store (and the erasure ledger) into a new
/// directory under the server's backup directory, while the server keeps serving. Restore it
/// with `attune restore`.
#[utoipa::path(post, path = "/v1/admin/backup", tag = "admin", request_body = BackupIn,
    responses((status = 200, description = "The backup written.", body = BackupOut),
        (status = 400, description = "The path is outside the backup directory.", body = ErrorBody),
        (status = 409, description = "Backups are off (no `--backup-dir`), the store is backed up with its own tools, or the path exists.", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_backup(
    State(state): State<AppState>,
    Auth(caller, _): Auth<Admin>,
    ApiJson(body): ApiJson<BackupIn>,
) -> ApiResult<Json<BackupOut>> {
    let Some(root) = state.backup_dir.clone() else {
        return Err(ApiError::new(Code::Conflict, "Backups are off: start `attune serve` with `--backup-dir DIR`."));
    };
    let dest = backup_path(&root, &body.path).ok_or_else(|| {
        ApiError::new(Code::InvalidValue, "`path` must name a new directory inside the server's backup directory.")
            .with_field("path")
    })?;
    if dest.exists() {
        return Err(
            ApiError::new(Code::Conflict, "That backup directory exists already; name a new one.").with_field("path")
        );
    }
    if state.engine.store().backend() != "embedded" {
        return Err(ApiError::new(
            Code::Conflict,
            "This server's store is PostgreSQL: back it up with pg_dump or a base backup (docs/operations.md).",
        ));
    }
    let shown = dest.display().to_string();
    let (report, taken_at_ms) = blocking(&state, move |engine| {
        let taken_at_ms = engine.now_ms();
        let report = engine.backup(&dest)?;
        engine.audit(&caller.key_id, "store.backup", &dest.display().to_string())?;
        Ok((report, taken_at_ms))
    })
    .await?;
    tracing::info!(path = %shown, events = report.events, "backup written");
    Ok(Json(BackupOut { path: shown, events: report.events, records: report.records, taken_at: rfc3339(taken_at_ms) }))
}

/// `requested` resolved inside `root`: a relative path of plain names, or an absolute path whose
/// existing parent is inside `root` (symbolic links resolved). `None` otherwise.
fn backup_path(root: &Path, requested: &str) -> Option<PathBuf> {
    let root = root.canonicalize().ok()?;
    let requested = Path::new(requested);
    if requested.is_absolute() {
        let name = requested.file_name()?;
        let parent = requested.parent()?.canonicalize().ok()?;
        let dest = parent.join(name);
        return (parent.starts_with(&root) && dest != root).then_some(dest);
    }
    if requested.as_os_str().is_empty() || !requested.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(requested))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_stay_inside_the_backup_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        assert_eq!(backup_path(&root, "nightly"), Some(root.join("nightly")));
        assert_eq!(backup_path(&root, "2026/nightly"), Some(root.join("2026/nightly")));
        assert_eq!(backup_path(&root, root.join("b").to_str().expect("utf8")), Some(root.join("b")));
        assert_eq!(backup_path(&root, "../escape"), None);
        assert_eq!(backup_path(&root, ""), None);
        assert_eq!(backup_path(&root, "/tmp/elsewhere"), None);
        assert_eq!(backup_path(&root, root.join("../x").to_str().expect("utf8")), None);
    }
}
