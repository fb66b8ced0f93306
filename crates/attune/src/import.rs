//! `attune import`: bulk-load events into a data directory without HTTP — JSON lines in the
//! `POST /v1/events` event shape, the `interactions.tsv` / `items.tsv` files of EVAL.md, or a CSV
//! of in-person and offline events (`--channel in_person FILE.csv`, see `import_csv.rs`). Events
//! go through the same validation, consent rules and durable store as the HTTP path, in large
//! batches (one fsync each) parsed on all cores.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, bail};
use attune_core::{Item, validate::RawEvent};
use attune_engine::{Engine, IngestItem, IngestReport, PreparedBatch};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// What to import.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A `.jsonl` file of events, an `interactions.tsv`, or a dataset directory holding
    /// `interactions.tsv` (and `items.tsv`).
    pub file: PathBuf,
    /// Data directory (the server must not be running on it).
    #[arg(long, env = "ATTUNE_DATA", default_value = "./attune-data")]
    pub data: PathBuf,
    /// Events per durable batch (larger batches: fewer table files and faster, more memory).
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    /// The channel of the events (`web`, `app`, `email`, `push`, `in_person`,
    /// `offline_purchase`): required for a `.csv` file (where a `channel` column may override it
    /// per row); for JSON lines it fills events that name none.
    #[arg(long)]
    pub channel: Option<String>,
}

/// Totals of an import.
#[derive(Debug, Default, Clone, Copy)]
pub struct ImportTotals {
    /// Lines read.
    pub lines: u64,
    /// Events accepted.
    pub accepted: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Rejected.
    pub rejected: u64,
    /// Items loaded.
    pub items: u64,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let channel = match args.channel.as_deref() {
        Some(name) => Some(
            attune_core::Channel::parse(name)
                .with_context(|| format!("--channel {name}: a channel is one of {}", attune_core::Channel::names()))?,
        ),
        None => None,
    };
    let csv = args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if csv && channel.is_none() {
        bail!("a CSV import names its channel: --channel in_person (or offline_purchase, web, app, email, push)");
    }
    let engine = crate::serve::open_engine_for_bulk_load(&args.data)?;
    let started = Instant::now();
    let totals = match channel {
        Some(channel) if csv => crate::import_csv::import_csv(&engine, &args.file, channel)?,
        _ => import_path_on(&engine, &args.file, args.batch, true, channel)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {} events ({} duplicates, {} rejected) and {} items in {:.2} s: {:.0} events/s",
        totals.accepted,
        totals.duplicates,
        totals.rejected,
        totals.items,
        seconds,
        totals.lines as f64 / seconds
    );
    Ok(())
}

/// Imports a file or dataset directory into `engine`.
pub fn import_path(engine: &Engine, path: &Path, batch: usize, progress: bool) -> anyhow::Result<ImportTotals> {
    import_path_on(engine, path, batch, progress, None)
}

/// [`import_path`]; JSON-lines events that name no channel get `channel`.
fn import_path_on(
    engine: &Engine,
    path: &Path,
    batch: usize,
    progress: bool,
    channel: Option<attune_core::Channel>,
) -> anyhow::Result<ImportTotals> {
    let mut totals = ImportTotals::default();
    let (events_file, items_file) = if path.is_dir() {
        let items = path.join("items.tsv");
        (path.join("interactions.tsv"), items.exists().then_some(items))
    } else {
        (path.to_path_buf(), None)
    };
    if let Some(items_file) = items_file {
        totals.items = import_items_tsv(engine, &items_file)?;
    }
    let tsv = events_file.extension().is_some_and(|e| e == "tsv");
    let file = std::fs::File::open(&events_file).with_context(|| format!("opening {}", events_file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if progress { ProgressBar::new(size) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
            .expect("the template is valid"),
    );
    let reader = BufReader::with_capacity(1 << 20, file);
    // Two stages overlap: a reader thread reads, parses and validates the next batch (on all
    // cores) while this thread stores the current one and folds it into profiles. A batch's lines
    // share one buffer, so reading allocates per batch, not per line. The first batches are
    // smaller, so that storing starts soon instead of after a whole batch was read.
    let (parsed_tx, parsed_rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Parsed>>(0);
    let batch = batch.max(1);
    let path_for_errors = events_file.clone();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        scope.spawn(move || {
            let mut reader = reader;
            let mut line_no = 0u64;
            let mut target = batch.min(FIRST_BATCH);
            loop {
                let mut text: Vec<u8> = Vec::new();
                // (start, end, 1-based line number) of each non-blank line.
                let mut lines: Vec<(usize, usize, u64)> = Vec::with_capacity(batch);
                while lines.len() < target {
                    let start = text.len();
                    match reader.read_until(b'\n', &mut text) {
                        Ok(0) => break,
                        Ok(_) => line_no += 1,
                        Err(err) => {
                            let context = format!("reading {}", path_for_errors.display());
                            let _ = parsed_tx.send(Err(anyhow::Error::new(err).context(context)));
                            return;
                        }
                    }
                    let mut end = text.len();
                    while end > start && matches!(text[end - 1], b'\n' | b'\r') {
                        end -= 1;
                    }
                    if !text[start..end].trim_ascii().is_empty() {
                        lines.push((start, end, line_no));
                    }
                }
                if lines.is_empty() {
                    return;
                }
                let items: Vec<IngestItem> = lines
                    .par_iter()
                    .enumerate()
                    .map(|(index, &(start, end, line_no))| {
                        let line = &text[start..end];
                        let mut item = if tsv { parse_tsv_line(line, line_no) } else { parse_json_line(line, index) };
                        if let (IngestItem::Raw(raw), Some(channel)) = (&mut item, channel)
                            && raw.channel.is_none()
                        {
                            raw.channel = Some(channel.as_str().to_owned());
                        }
                        item
                    })
                    .collect();
                target = (target * 2).min(batch);
                let line_numbers: Vec<u64> = lines.into_iter().map(|(_, _, line_no)| line_no).collect();
                let bytes = text.len() as u64;
                drop(text); // the lines are parsed: free them before validating
                let prepared = engine.prepare_batch(items);
                if parsed_tx.send(Ok(Parsed { bytes, prepared, line_numbers })).is_err() {
                    return;
                }
            }
        });
        for parsed in parsed_rx {
            let Parsed { bytes, prepared, line_numbers } = parsed?;
            let report: IngestReport = engine.store_batch(prepared, true).context("storing a batch")?;
            totals.lines += line_numbers.len() as u64;
            totals.accepted += report.accepted as u64;
            totals.duplicates += report.duplicates as u64;
            totals.rejected += report.rejected.len() as u64;
            if let Some((index, rejection)) = report.rejected.first()
                && totals.rejected == report.rejected.len() as u64
            {
                bar.println(format!(
                    "line {}: rejected ({}): {}",
                    line_numbers[*index],
                    rejection.code.as_str(),
                    rejection.message
                ));
            }
            bar.inc(bytes);
            bar.set_message(format!("{} events", totals.accepted));
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok(totals)
}

/// Events per durable batch unless `--batch` says otherwise.
pub const DEFAULT_BATCH: usize = 100_000;

/// The first batch's size (then each batch doubles up to `--batch`).
const FIRST_BATCH: usize = 16_384;

/// One prepared batch: the bytes it came from and each event's line number.
struct Parsed {
    bytes: u64,
    prepared: PreparedBatch,
    line_numbers: Vec<u64>,
}

fn parse_json_line(line: &[u8], index: usize) -> IngestItem {
    attune_server::routes::events::parse_event_line(line, index)
}

/// `user<TAB>item<TAB>weight<TAB>unix_ts` → a `rating` event (the weight is the rating).
fn parse_tsv_line(line: &[u8], line_no: u64) -> IngestItem {
    let Ok(line) = std::str::from_utf8(line) else {
        return IngestItem::Rejected(attune_core::validate::Rejection {
            code: attune_core::validate::RejectCode::InvalidType,
            field: None,
            message: format!("line {line_no}: not UTF-8"),
        });
    };
    let mut fields = line.split('\t');
    let (Some(user), Some(item), Some(weight), Some(ts)) = (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return IngestItem::Rejected(attune_core::validate::Rejection {
            code: attune_core::validate::RejectCode::MissingField,
            field: None,
            message: format!("line {line_no}: expected user, item, weight, unix_ts"),
        });
    };
    let ts_secs: i64 = ts.trim().parse().unwrap_or(-1);
    let ts = jiff::Timestamp::from_second(ts_secs).map(|t| t.to_string()).unwrap_or_else(|_| ts.to_owned());
    let mut properties = serde_json::Map::new();
    if let Ok(weight) = weight.trim().parse::<f64>() {
        properties.insert("rating".into(), serde_json::json!(weight));
    }
    IngestItem::Raw(RawEvent {
        id: Some(format!("tsv-{user}-{item}-{ts_secs}")),
        kind: Some("rating".into()),
        user: Some(user.to_owned()),
        item: Some(item.to_owned()),
        ts: Some(ts),
        properties,
        ..RawEvent::default()
    })
}

/// `item<TAB>title<TAB>tags` (header line, tags `|`-separated) → catalog items.
fn import_items_tsv(engine: &Engine, path: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let mut fields = line.split('\t');
        let (Some(id), Some(title)) = (fields.next(), fields.next()) else {
            bail!("{}:{}: expected item, title, tags", path.display(), i + 1);
        };
        if attune_core::check_id(id).is_err() {
            continue;
        }
        let tags = fields
            .next()
            .unwrap_or("")
            .split('|')
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.chars().count() <= 64)
            .take(50)
            .map(str::to_owned)
            .collect();
        items.push(Item {
            id: id.to_owned(),
            kind: "item".into(),
            title: title.chars().take(512).collect(),
            tags,
            attributes: serde_json::Map::new(),
            available: true,
            published_at: None,
            variants: serde_json::Map::new(),
        });
    }
    let n = items.len() as u64;
    engine.upsert_items(items).context("storing items")?;
    Ok(n)
}
