//! Line charts as standalone SVG (no scripts, no external fonts or assets).
//!
//! The load axis is categorical (levels evenly spaced, as in the seed's
//! comparison charts); throughput is on a linear axis from zero, latency on
//! a logarithmic one (levels from 10 to 1000 connections span decades).

use std::fmt::Write;

use crate::results::{Latency, Suite};

/// Line colours (colour-blind safe, Okabe–Ito), in series order.
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 340.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 96.0;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// (load, value) pairs; loads not on the x axis are ignored.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Title of the load axis.
    pub x_title: String,
    /// Title of the value axis.
    pub y_title: String,
    /// The load levels, in order (categorical positions).
    pub loads: Vec<f64>,
    /// The lines.
    pub lines: Vec<Line>,
    /// Logarithmic value axis.
    pub log_y: bool,
}

/// Escapes text for XML/HTML content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for an axis label: `12.5k`, `3M`, `0.25`.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if x.abs() >= 100.0 || x.fract() == 0.0 {
        0
    } else if x.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{x:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{suffix}")
}

/// Round ticks from 0 to at least `max`.
fn linear_ticks(max: f64) -> Vec<f64> {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Decades (and 2×, 5× between them when there are few) covering
/// `min..=max`.
fn log_ticks(min: f64, max: f64) -> Vec<f64> {
    let lo = min.max(1e-6).log10().floor() as i32;
    let hi = max.max(min * 1.0001).log10().ceil() as i32;
    let hi = hi.max(lo + 1);
    let mut ticks = Vec::new();
    for e in lo..=hi {
        let d = 10f64.powi(e);
        ticks.push(d);
        if hi - lo <= 2 && e < hi {
            ticks.push(2.0 * d);
            ticks.push(5.0 * d);
        }
    }
    ticks
}

impl Chart {
    /// The chart as an SVG document (also valid inline in HTML).
    pub fn svg(&self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let n = self.loads.len().max(1);
        let x_of = |load: f64| -> Option<f64> {
            let i = self.loads.iter().position(|l| *l == load)?;
            Some(if n == 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + plot_w * (i as f64 + 0.5) / n as f64
            })
        };
        let values: Vec<f64> = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.1))
            .filter(|v| v.is_finite() && (!self.log_y || *v > 0.0))
            .collect();
        let vmax = values.iter().copied().fold(0.0, f64::max);
        let vmin = values.iter().copied().fold(f64::INFINITY, f64::min);
        let ticks = if self.log_y {
            log_ticks(if vmin.is_finite() { vmin } else { 1.0 }, vmax.max(1e-6))
        } else {
            linear_ticks(vmax)
        };
        let (t0, t1) = (ticks[0], *ticks.last().expect("ticks"));
        let y_of = |v: f64| -> f64 {
            let f = if self.log_y {
                (v.log10() - t0.log10()) / (t1.log10() - t0.log10())
            } else {
                (v - t0) / (t1 - t0)
            };
            TOP + plot_h * (1.0 - f.clamp(0.0, 1.0))
        };
        let mut s = String::new();
        let _ = write!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12"><title>{}</title><rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##,
            escape(&self.title)
        );
        let _ = write!(
            s,
            r##"<text x="{}" y="22" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"##,
            WIDTH / 2.0,
            escape(&self.title)
        );
        for t in &ticks {
            let y = y_of(*t);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#dddddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                compact(*t)
            );
        }
        for load in &self.loads {
            let x = x_of(*load).expect("own load");
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#999999"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 5.0,
                TOP + plot_h + 18.0,
                compact(*load)
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333333"/><text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
            LEFT + plot_w / 2.0,
            TOP + plot_h + 36.0,
            escape(&self.x_title),
            TOP + plot_h / 2.0,
            escape(&self.y_title)
        );
        for (i, line) in self.lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let dash = if i >= PALETTE.len() {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            };
            let pts: Vec<(f64, f64)> = line
                .points
                .iter()
                .filter(|(_, v)| v.is_finite() && (!self.log_y || *v > 0.0))
                .filter_map(|(l, v)| Some((x_of(*l)?, y_of(*v))))
                .collect();
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                r##"<g class="series" data-label="{}"><polyline fill="none" stroke="{color}" stroke-width="2.5"{dash} points="{}"/>"##,
                escape(&line.label),
                path.join(" ")
            );
            for (x, y) in &pts {
                let _ = write!(
                    s,
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"##
                );
            }
            s.push_str("</g>");
        }
        // Legend: up to three per row under the axis title.
        for (i, line) in self.lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let (col, row) = (i % 3, i / 3);
            let x = LEFT + col as f64 * (plot_w / 3.0);
            let y = TOP + plot_h + 56.0 + row as f64 * 16.0;
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{y:.1}">{}</text>"##,
                x + 18.0,
                y - 4.0,
                y - 4.0,
                x + 24.0,
                escape(&line.label)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// Reads one figure of a latency summary.
pub type Pick = fn(&Latency) -> Option<f64>;

/// The latency figures charted, with the name used in titles and files.
pub const PERCENTILES: [(&str, Pick); 4] = [
    ("p50", |l| Some(l.p50_ms)),
    ("p90", |l| Some(l.p90_ms)),
    ("p99", |l| Some(l.p99_ms)),
    ("p99.9", |l| l.p999_ms),
];

/// The charts of one suite: throughput vs load, then each latency
/// percentile vs load; one line per series. Returns (file stem, chart).
pub fn suite_charts(suite: &Suite) -> Vec<(String, Chart)> {
    let loads = suite.loads();
    let x_title = suite.axis.title().to_owned();
    let mut charts = vec![(
        "throughput".to_owned(),
        Chart {
            title: format!("{}: throughput", suite.title),
            x_title: x_title.clone(),
            y_title: suite.throughput_unit.clone(),
            loads: loads.clone(),
            lines: suite
                .series
                .iter()
                .map(|s| Line {
                    label: s.label.clone(),
                    points: s.points.iter().map(|p| (p.load, p.throughput)).collect(),
                })
                .collect(),
            log_y: false,
        },
    )];
    for (name, get) in PERCENTILES {
        let lines: Vec<Line> = suite
            .series
            .iter()
            .map(|s| Line {
                label: s.label.clone(),
                points: s
                    .points
                    .iter()
                    .filter_map(|p| Some((p.load, get(p.latency.as_ref()?)?)))
                    .collect(),
            })
            .collect();
        if lines.iter().all(|l| l.points.is_empty()) {
            continue;
        }
        charts.push((
            format!("latency-{}", name.replace('.', "")),
            Chart {
                title: format!("{}: {name} latency", suite.title),
                x_title: x_title.clone(),
                y_title: format!("{name} ms (log scale)"),
                loads: loads.clone(),
                lines,
                log_y: true,
            },
        ));
    }
    charts
}
