//! Line charts as inline SVG, rendered on the server: no script, no dependency, readable by a
//! screen reader (each chart has a `<title>`, a `<desc>` that says what it shows, and the numbers
//! stay in the tables beside it).
//!
//! A chart has series of points over time, each optionally with an interval band (the lift's
//! always-valid interval). Values are placed on a shared y range that always includes zero when
//! asked (a lift's "no difference" line); bands wider than `clip` are cut at it and the chart
//! says so, so that one early, wide interval does not flatten everything after it.

use maud::{Markup, html};

/// One line.
pub(super) struct Series {
    /// Shown in the legend.
    pub label: String,
    /// (time in ms, value), oldest first.
    pub points: Vec<(i64, f64)>,
    /// (time in ms, low, high) of the interval around each point, if any.
    pub band: Vec<(i64, f64, f64)>,
}

/// How a chart frames its values.
pub(super) struct Frame<'a> {
    /// The chart's accessible title.
    pub title: &'a str,
    /// One sentence describing what it shows.
    pub description: &'a str,
    /// Formats a value for the axis labels.
    pub format: fn(f64) -> String,
    /// Whether zero must be on the y range (and drawn as a reference line).
    pub zero: bool,
    /// Values beyond ±`clip` are cut (bands only; points always fit).
    pub clip: Option<f64>,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
const COLORS: [&str; 4] = ["#2f6f5e", "#b5562f", "#3f5c9a", "#8a6d1f"];

/// A line chart of `series`; a paragraph instead when there is nothing to draw.
pub(super) fn line_chart(frame: &Frame<'_>, series: &[Series]) -> Markup {
    let n_points: usize = series.iter().map(|s| s.points.len()).sum();
    if n_points == 0 {
        return html! { p.small { (frame.title) ": no data yet." } };
    }
    let clip = frame.clip.unwrap_or(f64::INFINITY);
    let mut clipped = false;
    let (mut x_min, mut x_max) = (i64::MAX, i64::MIN);
    let (mut y_min, mut y_max) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for &(x, y) in &s.points {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            y_min = y_min.min(y);
            y_max = y_max.max(y);
        }
        for &(x, low, high) in &s.band {
            x_min = x_min.min(x);
            x_max = x_max.max(x);
            clipped |= low < -clip || high > clip;
            y_min = y_min.min(low.max(-clip));
            y_max = y_max.max(high.min(clip));
        }
    }
    if frame.zero {
        y_min = y_min.min(0.0);
        y_max = y_max.max(0.0);
    }
    if !(y_max - y_min).is_normal() {
        // One flat value: give it some room.
        let pad = if y_max.abs() > 0.0 { y_max.abs() * 0.1 } else { 1.0 };
        y_min -= pad;
        y_max += pad;
    }
    if x_max <= x_min {
        x_max = x_min + 1;
    }
    let x_of = |x: i64| LEFT + (x - x_min) as f64 / (x_max - x_min) as f64 * (WIDTH - LEFT - RIGHT);
    let y_of = |y: f64| TOP + (y_max - y.clamp(y_min, y_max)) / (y_max - y_min) * (HEIGHT - TOP - BOTTOM);
    let ticks = [y_max, (y_max + y_min) / 2.0, y_min];
    let day = |ms: i64| crate::routes::rfc3339(ms).get(..10).unwrap_or_default().to_owned();
    let description = if clipped {
        format!("{} Intervals wider than the chart are cut at its edge.", frame.description)
    } else {
        frame.description.to_owned()
    };
    html! {
        figure.chart {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width="100%" role="img" {
                title { (frame.title) }
                desc { (description) }
                @for tick in ticks {
                    line.grid x1=(LEFT) x2=(WIDTH - RIGHT) y1=(num(y_of(tick))) y2=(num(y_of(tick))) stroke="#e7e3da" {}
                    text x=(LEFT - 6.0) y=(num(y_of(tick) + 4.0)) text-anchor="end" font-size="11" fill="#5b6666" { ((frame.format)(tick)) }
                }
                @if frame.zero {
                    line.zero x1=(LEFT) x2=(WIDTH - RIGHT) y1=(num(y_of(0.0))) y2=(num(y_of(0.0))) stroke="#1f2a2a" stroke-dasharray="4 3" {}
                }
                text x=(LEFT) y=(HEIGHT - 8.0) font-size="11" fill="#5b6666" { (day(x_min)) }
                text x=(WIDTH - RIGHT) y=(HEIGHT - 8.0) text-anchor="end" font-size="11" fill="#5b6666" { (day(x_max)) }
                @for (i, s) in series.iter().enumerate() {
                    @let color = COLORS[i % COLORS.len()];
                    @if s.band.len() >= 2 {
                        polygon.band fill=(color) fill-opacity="0.15" stroke="none" points=(band_points(&s.band, clip, &x_of, &y_of)) {}
                    }
                    @if s.points.len() >= 2 {
                        polyline.line fill="none" stroke=(color) stroke-width="2" points=(line_points(&s.points, &x_of, &y_of)) {}
                    }
                    @for &(x, y) in &s.points {
                        circle cx=(num(x_of(x))) cy=(num(y_of(y))) r="2.5" fill=(color) {
                            title { (s.label) ", " (day(x)) ": " ((frame.format)(y)) }
                        }
                    }
                }
            }
            figcaption.small {
                (frame.title)
                @for (i, s) in series.iter().enumerate() {
                    " · " span style=(format!("color: {}", COLORS[i % COLORS.len()])) { "■" } " " (s.label)
                }
            }
        }
    }
}

/// A coordinate with one decimal: enough for a 640-wide drawing, short in the page.
fn num(value: f64) -> String {
    format!("{value:.1}")
}

fn line_points(points: &[(i64, f64)], x_of: &impl Fn(i64) -> f64, y_of: &impl Fn(f64) -> f64) -> String {
    points.iter().map(|&(x, y)| format!("{},{}", num(x_of(x)), num(y_of(y)))).collect::<Vec<_>>().join(" ")
}

/// The band as one polygon: along the upper bounds, then back along the lower ones.
fn band_points(band: &[(i64, f64, f64)], clip: f64, x_of: &impl Fn(i64) -> f64, y_of: &impl Fn(f64) -> f64) -> String {
    let upper = band.iter().map(|&(x, _, high)| (x, high.min(clip)));
    let lower = band.iter().rev().map(|&(x, low, _)| (x, low.max(-clip)));
    upper.chain(lower).map(|(x, y)| format!("{},{}", num(x_of(x)), num(y_of(y)))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percent(x: f64) -> String {
        format!("{:.0}%", x * 100.0)
    }

    fn frame() -> Frame<'static> {
        Frame { title: "Lift", description: "The lift.", format: percent, zero: true, clip: Some(1.0) }
    }

    #[test]
    fn draws_lines_bands_and_a_zero_line_inside_the_box() {
        let series = [Series {
            label: "personalized".into(),
            points: vec![(0, 0.1), (86_400_000, 0.05), (2 * 86_400_000, 0.08)],
            band: vec![(0, -3.0, 3.0), (86_400_000, -0.2, 0.3), (2 * 86_400_000, 0.01, 0.15)],
        }];
        let svg = line_chart(&frame(), &series).into_string();
        assert!(svg.contains("<svg") && svg.contains("<polyline") && svg.contains("<polygon"), "{svg}");
        assert!(svg.contains("class=\"zero\""), "{svg}");
        assert!(svg.contains("cut at its edge"), "the wide first interval is clipped and said so: {svg}");
        assert!(svg.contains("1970-01-01") && svg.contains("1970-01-03"), "{svg}");
        // Every coordinate is inside the drawing.
        for part in svg.split("points=\"").skip(1) {
            let list = &part[..part.find('"').unwrap()];
            for pair in list.split(' ') {
                let (x, y) = pair.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((0.0..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y), "{pair} in {svg}");
            }
        }
    }

    #[test]
    fn nothing_to_draw_says_so_and_one_value_still_draws() {
        assert!(line_chart(&frame(), &[]).into_string().contains("no data yet"));
        let one = [Series { label: "everyone".into(), points: vec![(5, 0.0)], band: vec![] }];
        let svg = line_chart(&frame(), &one).into_string();
        assert!(svg.contains("<circle") && !svg.contains("NaN"), "{svg}");
    }
}
