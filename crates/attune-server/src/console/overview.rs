//! `GET /console`: the state of things, the latest decisions (under keyed pseudonyms, as the
//! review log shows them), and what needs an editor.

use axum::{extract::State, http::StatusCode, response::Response};
use maud::html;

use super::{
    page::{Titles, decision_log, failure, page, when},
    session::SignedIn,
};
use crate::{AppState, blocking};

/// `GET /console`: the state of things, the latest decisions, and what needs an editor.
pub async fn get_overview(State(state): State<AppState>, _editor: SignedIn) -> Response {
    let loaded = blocking(&state, |engine| {
        let (events, disk_bytes) = engine.store_stats()?;
        let decisions = engine.recent_decisions(None, 0, 25)?;
        let titles = Titles::of_decisions(engine, &decisions);
        Ok((events, disk_bytes, decisions, titles))
    })
    .await;
    let (events, disk_bytes, decisions, titles) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure(error),
    };
    let engine = &state.engine;
    let now_ms = engine.now_ms();
    let models = engine.models();
    let due = engine.rules(true);
    let flags = engine.flags();
    page(
        StatusCode::OK,
        "Overview",
        html! {
            section aria-labelledby="numbers" {
                h2 #numbers { "At a glance" }
                dl.numbers {
                    dt { "Events stored" } dd { (events) }
                    dt { "People" } dd { (engine.n_people()) }
                    dt { "Items available" } dd { (engine.catalog().n_available()) }
                    dt { "Store on disk" } dd { (format!("{:.1} MiB", disk_bytes as f64 / 1_048_576.0)) }
                    dt { "Models" }
                    dd {
                        @if models.version == 0 { "not trained yet (decisions use popularity)" }
                        @else { "version " (models.version) ", trained " (when(models.trained_at_ms)) }
                    }
                }
                @for stats in &models.stats {
                    @if let Some(metrics) = &stats.metrics {
                        p.small { (stats.name) ": NDCG@10 " (format!("{:.3}", metrics.ndcg)) ", recall@10 "
                            (format!("{:.3}", metrics.recall)) " on " (metrics.people) " people held out" }
                    }
                }
            }
            section aria-labelledby="attention" {
                h2 #attention { "Needs an editor" }
                ul {
                    li { a href="/console/rules" { (due.len()) " rule(s) due for review" } }
                    li { a href="/console/editorial" { (flags.len()) " flagged item(s) held back" } }
                }
            }
            section aria-labelledby="whom" {
                h2 #whom { "What is recommended to whom" }
                form method="get" action="/console/person" {
                    div.field {
                        label for="id" { "Person (user or anonymous id)" }
                        input #id name="id" required;
                    }
                    div.field {
                        label for="slot" { "Slot" }
                        input #slot name="slot" value="home_feed";
                    }
                    button type="submit" { "Show" }
                }
                h3 { "Latest decisions" }
                (decision_log(engine, &decisions, &titles, now_ms))
            }
        },
    )
}
