//! `attune import --channel in_person FILE.csv`: events from places without a page — retreat
//! attendance, a class, a purchase at a shop's till — under a known user id, through the same
//! validation, consent rules and durable store as `POST /v1/events`.
//!
//! The file is CSV (RFC 4180: comma-separated, a header line, fields with commas, quotes or line
//! breaks in double quotes). Columns by header name:
//!
//! | column | |
//! |---|---|
//! | `user` | required: the person's id (in-person data always names a known person) |
//! | `type` | required: a built-in type (`purchase`, `view`, ...) or a declared one (`retreat_attended`) |
//! | `ts` | RFC 3339, or seconds since the Unix epoch (default: the time of import) |
//! | `item` | the item it is about (required for item types such as `purchase`) |
//! | `id` | the event id (default: derived from the row, so importing a file twice stores it once) |
//! | `channel` | this row's channel, else `--channel` |
//! | `context.<field>` | a context field (`context.timezone`) |
//! | anything else | a property, typed by the type's schema (`value`, `quantity`, `currency`, ...) |
//!
//! Empty cells are absent. Properties the type does not declare are dropped, as over HTTP.

use std::path::Path;

use anyhow::{Context, bail};
use attune_core::{
    BuiltinType, Channel, PropType, Schema,
    validate::{RawEvent, RejectCode, Rejection},
};
use attune_engine::{Engine, IngestItem};
use serde_json::{Map, Value, json};

use crate::import::ImportTotals;

/// Rows per durable batch.
const BATCH: usize = 10_000;

/// Rejections printed with their line number (the rest are counted).
const SHOWN_REJECTIONS: usize = 20;

/// Imports a CSV file of events; `channel` applies to rows without a `channel` column value.
pub fn import_csv(engine: &Engine, path: &Path, channel: Channel) -> anyhow::Result<ImportTotals> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("reading the header line of {}", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    for required in ["user", "type"] {
        if !headers.iter().any(|h| h == required) {
            bail!("{}: the header line has no `{required}` column (columns: {})", path.display(), headers.join(", "));
        }
    }
    let mut totals = ImportTotals::default();
    let mut shown = 0usize;
    let mut batch: Vec<IngestItem> = Vec::with_capacity(BATCH);
    let mut lines: Vec<u64> = Vec::with_capacity(BATCH);
    let mut flush =
        |batch: &mut Vec<IngestItem>, lines: &mut Vec<u64>, totals: &mut ImportTotals| -> anyhow::Result<()> {
            if batch.is_empty() {
                return Ok(());
            }
            let report = engine.ingest(std::mem::take(batch)).context("storing a batch")?;
            totals.lines += lines.len() as u64;
            totals.accepted += report.accepted as u64;
            totals.duplicates += report.duplicates as u64;
            totals.rejected += report.rejected.len() as u64;
            for (index, rejection) in &report.rejected {
                if shown < SHOWN_REJECTIONS {
                    shown += 1;
                    let field = rejection.field.as_deref().map(|f| format!(" `{f}`")).unwrap_or_default();
                    eprintln!(
                        "line {}: rejected ({}{field}): {}",
                        lines[*index],
                        rejection.code.as_str(),
                        rejection.message
                    );
                }
            }
            lines.clear();
            Ok(())
        };
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        batch.push(row_event(engine, &headers, &record, channel));
        lines.push(line);
        if batch.len() >= BATCH {
            flush(&mut batch, &mut lines, &mut totals)?;
        }
    }
    flush(&mut batch, &mut lines, &mut totals)?;
    if totals.rejected as usize > shown {
        eprintln!("… and {} more rejected rows", totals.rejected as usize - shown);
    }
    Ok(totals)
}

/// One CSV row as an event for the engine to validate.
fn row_event(engine: &Engine, headers: &[String], record: &csv::StringRecord, channel: Channel) -> IngestItem {
    let cell = |name: &str| {
        headers.iter().position(|h| h == name).and_then(|i| record.get(i)).filter(|v| !v.is_empty()).map(str::to_owned)
    };
    let kind = cell("type");
    let schema: Option<Schema> = kind.as_deref().and_then(|k| match BuiltinType::parse(k) {
        Some(builtin) => Some(builtin.schema()),
        None => engine.schema(k),
    });
    let mut raw = RawEvent {
        id: cell("id"),
        kind,
        user: cell("user"),
        item: cell("item"),
        ts: cell("ts"),
        channel: Some(cell("channel").unwrap_or_else(|| channel.as_str().to_owned())),
        decision_id: cell("decision_id"),
        ..RawEvent::default()
    };
    if raw.user.is_none() {
        return IngestItem::Rejected(Rejection {
            code: RejectCode::MissingField,
            field: Some("user".into()),
            message: "In-person and offline events name a known person in the `user` column.".into(),
        });
    }
    if let Some(ts) = &raw.ts
        && let Ok(seconds) = ts.parse::<i64>()
        && let Ok(timestamp) = jiff::Timestamp::from_second(seconds)
    {
        raw.ts = Some(timestamp.to_string());
    }
    let mut context = Map::new();
    let mut properties = Map::new();
    for (name, value) in headers.iter().zip(record.iter()) {
        if value.is_empty() || ["id", "type", "user", "item", "ts", "channel", "decision_id"].contains(&name.as_str()) {
            continue;
        }
        match name.strip_prefix("context.") {
            Some(field) => {
                context.insert(field.to_owned(), Value::String(value.to_owned()));
            }
            None => {
                let declared = schema.as_ref().and_then(|s| s.property(name));
                properties.insert(name.clone(), typed(value, declared));
            }
        }
    }
    raw.context = context;
    raw.properties = properties;
    if raw.id.is_none() {
        // The row's content names it: importing the same file again stores nothing twice.
        let key = format!(
            "{}\0{}\0{}\0{}\0{}\0{}",
            raw.channel.as_deref().unwrap_or(""),
            raw.user.as_deref().unwrap_or(""),
            raw.kind.as_deref().unwrap_or(""),
            raw.item.as_deref().unwrap_or(""),
            raw.ts.as_deref().unwrap_or(""),
            record.iter().collect::<Vec<_>>().join("\u{1f}")
        );
        raw.id = Some(format!("csv-{:032x}", xxhash_rust::xxh3::xxh3_128(key.as_bytes())));
    }
    IngestItem::Raw(raw)
}

/// A cell as the JSON value its declared type wants; as a string when it does not parse (the
/// validator then says which property is wrong).
fn typed(value: &str, declared: Option<PropType>) -> Value {
    let parsed = match declared {
        Some(PropType::Number) => value.parse::<f64>().ok().filter(|x| x.is_finite()).map(|x| json!(x)),
        Some(PropType::Integer) => value.parse::<i64>().ok().map(|x| json!(x)),
        Some(PropType::Boolean) => match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(json!(true)),
            "false" | "no" | "0" => Some(json!(false)),
            _ => None,
        },
        Some(PropType::String) | None => None,
    };
    parsed.unwrap_or_else(|| Value::String(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_take_their_declared_type() {
        assert_eq!(typed("89.5", Some(PropType::Number)), json!(89.5));
        assert_eq!(typed("2", Some(PropType::Integer)), json!(2));
        assert_eq!(typed("yes", Some(PropType::Boolean)), json!(true));
        assert_eq!(typed("00123", Some(PropType::String)), json!("00123"));
        assert_eq!(typed("lots", Some(PropType::Number)), json!("lots"), "left for the validator to refuse");
    }
}
