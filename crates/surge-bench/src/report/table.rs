//! The plain-text table printed on the terminal.

use std::fmt::Write;

use crate::report::chart::compact;
use crate::results::{LoadAxis, Point, Results, Suite};

/// Header cells of a suite's table.
pub(crate) fn header(suite: &Suite) -> Vec<String> {
    let mut h: Vec<String> = [
        "target",
        suite.axis.title(),
        suite.throughput_unit.as_str(),
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if suite.axis == LoadAxis::RequestRate {
        h.push("p99 from send ms".to_owned());
    }
    h.extend(["errors".to_owned(), "MiB read".to_owned()]);
    h
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `12 (timeout 10, network 2)` or `0`.
pub(crate) fn errors_text(p: &Point) -> String {
    let total = p.error_total();
    if total == 0 {
        return "0".to_owned();
    }
    let parts: Vec<String> = p
        .errors
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    format!("{total} ({})", parts.join(", "))
}

/// Thousands separated: `12,345`.
pub(crate) fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// The cells of one row.
pub fn point_row(suite: &Suite, label: &str, p: &Point) -> Vec<String> {
    let dash = || "-".to_owned();
    let l = p.latency.as_ref();
    let mut row = vec![
        label.to_owned(),
        compact(p.load),
        thousands(p.throughput),
        l.map_or_else(dash, |l| ms(l.mean_ms)),
        l.map_or_else(dash, |l| ms(l.p50_ms)),
        l.map_or_else(dash, |l| ms(l.p90_ms)),
        l.map_or_else(dash, |l| ms(l.p99_ms)),
        l.and_then(|l| l.p999_ms).map_or_else(dash, ms),
        l.map_or_else(dash, |l| ms(l.max_ms)),
    ];
    if suite.axis == LoadAxis::RequestRate {
        row.push(
            p.uncorrected_latency
                .as_ref()
                .map_or_else(dash, |l| ms(l.p99_ms)),
        );
    }
    row.push(errors_text(p));
    row.push(format!("{:.1}", p.bytes as f64 / 1_048_576.0));
    row
}

/// Every suite as an aligned text table, rows grouped by load level.
pub fn table(results: &Results) -> String {
    let mut out = String::new();
    for suite in &results.suites {
        let mut rows = vec![header(suite)];
        for load in suite.loads() {
            for s in &suite.series {
                for p in s.points.iter().filter(|p| p.load == load) {
                    rows.push(point_row(suite, &s.label, p));
                }
            }
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let _ = writeln!(out, "{} (latency {})", suite.title, suite.latency_meaning);
        for (i, row) in rows.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (cell, w))| {
                    if c == 0 || c == row.len() - 2 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
            if i == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                let _ = writeln!(out, "  {}", "-".repeat(total));
            }
        }
        for note in &suite.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out.push('\n');
    }
    out
}
