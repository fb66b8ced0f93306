//! `GET /console/measure`: the four-dimension report of the last 30 days with its weekly trend,
//! and every experiment that is not archived: results per metric and arm, the cumulative lift
//! with its always-valid interval, and sample-ratio warnings.

use axum::{extract::State, http::StatusCode, response::Response};
use maud::html;

use super::{
    chart::{Frame, Series, line_chart},
    page::{failure, page},
    session::SignedIn,
};
use crate::{AppState, blocking};

/// `GET /console/measure`: the four-dimension report of the last 30 days, and every experiment.
pub async fn get_measure(State(state): State<AppState>, _editor: SignedIn) -> Response {
    let loaded = blocking(&state, |engine| {
        let now_ms = engine.now_ms();
        let report = engine.report(now_ms - 30 * 86_400_000, now_ms)?;
        let experiments = engine
            .stored_experiments()
            .into_iter()
            .filter(|stored| stored.status != attune_engine::experiments::Status::Archived)
            .map(|stored| {
                let id = &stored.experiment.id;
                let results = engine.experiment_results(id, attune_engine::experiments::WINDOW_MS)?;
                let timeline = engine.experiment_timeline(id, attune_engine::experiments::WINDOW_MS, CHART_POINTS)?;
                Ok((stored.experiment, results, timeline))
            })
            .collect::<attune_engine::Result<Vec<_>>>()?;
        Ok((report, experiments))
    })
    .await;
    let (report, experiments) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return failure(error),
    };
    let percent = |x: f64| format!("{:.1}%", x * 100.0);
    let trend = weekly_trend(&report.weeks);
    page(
        StatusCode::OK,
        "Measurement",
        html! {
            section aria-labelledby="report" {
                h2 #report { "The last 30 days, in four dimensions" }
                div.grid {
                    div { h3 { "Behavioral" } dl.numbers {
                        dt { "Active people" } dd { (report.active_people) }
                        dt { "Engagement depth" } dd { (format!("{:.2}", report.engagement_depth)) }
                        dt { "Completion" } dd { (percent(report.completion)) }
                        dt { "Return rate" } dd { (percent(report.return_rate)) }
                    } }
                    div { h3 { "Attitudinal" } dl.numbers {
                        dt { "Survey score (1–10)" } dd { @match report.survey_mean { Some(mean) => (format!("{mean:.1}")), None => "no answers yet" } }
                        dt { "Answers" } dd { (report.survey_count) }
                    } }
                    div { h3 { "Business" } dl.numbers {
                        dt { "Conversion" } dd { (percent(report.conversion)) }
                        dt { "Revenue" } dd { (format!("{:.2}", report.revenue)) }
                        dt { "Revenue per person" } dd { (format!("{:.2}", report.revenue_per_person)) }
                    } }
                    div { h3 { "Ethical" } dl.numbers {
                        dt { "People" } dd { (report.ethical.people) }
                        dt { "Personalization consent" } dd { (percent(report.ethical.consent_rate(attune_core::Purpose::Personalization))) }
                        dt { "Opted out" } dd { (report.ethical.opted_out) }
                        dt { "Paused" } dd { (report.ethical.personalization_paused) }
                        dt { "Erasures" } dd { (report.ethical.erasures) }
                        dt { "Held past retention" } dd { (report.ethical.held_past_retention) }
                    } }
                }
                h3 { "Week by week" }
                (trend)
            }
            section aria-labelledby="experiments" {
                h2 #experiments { "Experiments" }
                @if experiments.is_empty() { p { "No experiments. Start one with " code { "PUT /v1/experiments/{id}" } "." } }
                @for (experiment, results, timeline) in &experiments {
                    h3 { (experiment.id) " " span.small { "on " (experiment.slot) " · " (results.status.as_str()) " · people exposed: "
                        (results.exposed.iter().map(|(arm, n)| format!("{arm} {n}")).collect::<Vec<_>>().join(", ")) } }
                    @if results.srm_mismatch {
                        p.error { "Sample ratio mismatch (p = " (format!("{:.2e}", results.srm_p)) "): the arms are not getting the people they should; do not trust the lift." }
                    }
                    (lift_chart(timeline))
                    table {
                        thead { tr { th { "Metric" } th { "Arm" } th { "People" } th { "Mean" } th { "Lift (95% interval)" } th { "Always-valid interval" } th { "CUPED lift" } th { "p" } } }
                        tbody {
                            @for metric in &results.metrics {
                                @for arm in &metric.arms {
                                    tr {
                                        td { (metric.name) }
                                        td { (arm.arm) }
                                        td { (arm.stats.n) }
                                        td { (format!("{:.4}", arm.mean)) }
                                        td { @match arm.lift { Some(t) => (format!("{} ({} to {})", percent(t.expected), percent(t.ci.0), percent(t.ci.1))), None => "—" } }
                                        td { @match arm.sequential { Some(t) => (format!("{} to {}", percent(t.ci.0), percent(t.ci.1))), None => "—" } }
                                        td { @match arm.cuped { Some(t) => (format!("{} ({} to {})", percent(t.expected), percent(t.ci.0), percent(t.ci.1))), None => "—" } }
                                        td { @match arm.lift { Some(t) => (format!("{:.3}", t.p_value)), None => "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Points on an experiment's lift chart.
const CHART_POINTS: usize = 20;

fn signed_percent(x: f64) -> String {
    format!("{:+.0}%", x * 100.0)
}

fn percent(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn two_decimals(x: f64) -> String {
    format!("{x:.2}")
}

fn one_decimal(x: f64) -> String {
    format!("{x:.1}")
}

/// The cumulative lift of each arm over the control on the experiment's primary metric, with
/// its always-valid interval as a band.
fn lift_chart(timeline: &attune_engine::experiments::LiftTimeline) -> maud::Markup {
    let series: Vec<Series> = timeline
        .arms
        .iter()
        .enumerate()
        .skip(1)
        .map(|(arm, label)| {
            let tests =
                timeline.points.iter().filter_map(|p| Some((p.at_ms, p.sequential.get(arm).copied().flatten()?)));
            Series {
                label: label.clone(),
                points: tests.clone().map(|(at, t)| (at, t.expected)).collect(),
                band: tests.map(|(at, t)| (at, t.ci.0, t.ci.1)).collect(),
            }
        })
        .collect();
    let title = format!(
        "Cumulative lift on {} over {}",
        timeline.metric,
        timeline.arms.first().map_or("control", String::as_str)
    );
    let description = format!(
        "Relative lift of each arm over the control on {} as people were exposed, with the always-valid 95% interval \
         (safe to look at every day): an interval that stays clear of the dashed zero line is a difference.",
        timeline.metric
    );
    line_chart(
        &Frame { title: &title, description: &description, format: signed_percent, zero: true, clip: Some(1.0) },
        &series,
    )
}

/// The report's weekly trend on the four dimensions, one chart each (personalized people against
/// the global holdout when there is one).
fn weekly_trend(weeks: &[attune_engine::measure::GroupWeek]) -> maud::Markup {
    let mut groups: Vec<&str> = weeks.iter().map(|w| w.group).collect();
    groups.dedup();
    groups.sort_unstable();
    groups.dedup();
    let series = |value: fn(&attune_engine::measure::GroupWeek) -> Option<f64>| -> Vec<Series> {
        groups
            .iter()
            .map(|group| Series {
                label: (*group).to_owned(),
                points: weeks
                    .iter()
                    .filter(|w| w.group == *group)
                    .filter_map(|w| Some((w.week_start_ms, value(w)?)))
                    .collect(),
                band: Vec::new(),
            })
            .collect()
    };
    let charts = [
        (
            "Behavioral: events per active person",
            "Events per person active that week.",
            two_decimals as fn(f64) -> String,
            series(|w| Some(w.events_per_person)),
        ),
        (
            "Attitudinal: mean survey score (1–10)",
            "Mean answer to the 1–10 survey that week.",
            one_decimal,
            series(|w| w.survey_mean),
        ),
        (
            "Business: conversion",
            "Share of people active that week who bought.",
            percent,
            series(|w| Some(w.conversion)),
        ),
        (
            "Ethical: opted out or paused",
            "Share of people active that week who now withhold personalization consent or paused it.",
            percent,
            series(|w| Some(w.opt_out_rate)),
        ),
    ];
    maud::html! {
        div.charts {
            @for (title, description, format, series) in &charts {
                (line_chart(&Frame { title, description, format: *format, zero: true, clip: None }, series))
            }
        }
    }
}
