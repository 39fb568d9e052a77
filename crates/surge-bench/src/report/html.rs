//! The self-contained HTML report: inline CSS and SVG, no script, no
//! external asset of any kind (it opens from a file with no network).

use std::fmt::Write;

use crate::plan::{Client, LoadModel, Stop};
use crate::report::chart::{escape, suite_charts};
use crate::report::table::{header, point_row, thousands};
use crate::results::{Results, Suite};

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}\
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;font-size:13px;margin:8px 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee}\
.meta td{text-align:left}.note{color:#8a4b00}code{background:#f4f4f4;padding:1px 3px}";

/// The report of `results` as one HTML document.
pub fn html(results: &Results) -> String {
    let mut s = String::new();
    let title = match results.suites.as_slice() {
        [one] => format!("surge bench: {}", one.title),
        _ => "surge bench".to_owned(),
    };
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>{}</h1>",
        escape(&title),
        escape(&title)
    );
    machine(&mut s, results);
    for (i, suite) in results.suites.iter().enumerate() {
        suite_section(&mut s, suite, i);
    }
    s.push_str("</body></html>\n");
    s
}

fn machine(s: &mut String, r: &Results) {
    let m = &r.machine;
    let load = m.load_average.map_or_else(
        || "unknown".to_owned(),
        |l| format!("{:.2} / {:.2} / {:.2}", l[0], l[1], l[2]),
    );
    let mut rows = vec![
        ("date", r.started_at.clone()),
        ("surge", r.surge_version.clone()),
        ("CPU", format!("{} × {}", m.cpus, m.cpu)),
        ("memory", format!("{} GiB", m.memory_gib)),
        ("kernel", m.kernel.clone()),
        ("host", m.hostname.clone()),
        ("load average at start (1/5/15 min)", load),
    ];
    if let Some(c) = &r.command {
        rows.push(("command", c.clone()));
    }
    s.push_str("<table class=\"meta\" id=\"machine\">");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    s.push_str("</table>");
}

fn plan_text(suite: &Suite) -> Option<String> {
    let p = suite.plan.as_ref()?;
    let stop = match p.stop {
        Stop::Duration(d) => format!("{} s measured", d.as_secs_f64()),
        Stop::Requests(n) => format!("{} counted requests", thousands(n as f64)),
    };
    let model = match &p.load {
        LoadModel::Closed { .. } => "closed loop (one task per connection)".to_owned(),
        LoadModel::Open { connections, .. } => {
            format!("open loop over {connections} connections per level")
        }
    };
    Some(format!(
        "{model}; per level {stop} after {} s of warm-up (not counted); request timeout {} s; {} generator threads; {} HTTP client",
        p.warmup.as_secs_f64(),
        p.timeout.as_secs_f64(),
        p.threads,
        match p.client.resolved() {
            Client::Hyper => "hyper's",
            Client::Auto | Client::Lean => "the lean",
        }
    ))
}

fn suite_section(s: &mut String, suite: &Suite, index: usize) {
    let _ = write!(
        s,
        "<section class=\"suite\" id=\"suite-{index}\"><h2>{}</h2><p>Latency: {}.</p>",
        escape(&suite.title),
        escape(&suite.latency_meaning)
    );
    if let Some(t) = plan_text(suite) {
        let _ = write!(s, "<p>{}</p>", escape(&t));
    }
    for note in &suite.notes {
        let _ = write!(s, "<p class=\"note\">{}</p>", escape(note));
    }
    s.push_str(
        "<table class=\"targets\"><tr><th>target</th><th>request</th><th>measured</th></tr>",
    );
    for series in &suite.series {
        let request = series.target.as_ref().map_or_else(String::new, |t| {
            let mut r = format!("{} {}", t.method, t.url);
            for h in &t.headers {
                let _ = write!(r, "; {h}");
            }
            if t.body_bytes > 0 {
                let _ = write!(r, "; body {} bytes", t.body_bytes);
            }
            r
        });
        let _ = write!(
            s,
            "<tr class=\"target\" data-label=\"{}\"><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            escape(&series.label),
            escape(&series.label),
            escape(&request),
            escape(series.measured_at.as_deref().unwrap_or("with the run"))
        );
    }
    s.push_str("</table><div class=\"charts\">");
    for (_, chart) in suite_charts(suite) {
        s.push_str(&chart.svg());
    }
    s.push_str("</div><table class=\"results\"><tr>");
    for h in header(suite) {
        let _ = write!(s, "<th>{}</th>", escape(&h));
    }
    s.push_str("</tr>");
    for load in suite.loads() {
        for series in &suite.series {
            for p in series.points.iter().filter(|p| p.load == load) {
                s.push_str("<tr>");
                for cell in point_row(suite, &series.label, p) {
                    let _ = write!(s, "<td>{}</td>", escape(&cell));
                }
                s.push_str("</tr>");
            }
        }
    }
    s.push_str("</table>");
    let firsts: Vec<String> = suite
        .series
        .iter()
        .flat_map(|se| {
            se.points.iter().filter_map(move |p| {
                p.first_error
                    .as_ref()
                    .map(|e| format!("{} at {}: {e}", se.label, p.load))
            })
        })
        .collect();
    if !firsts.is_empty() {
        s.push_str("<p>First error per level:</p><ul>");
        for f in firsts {
            let _ = write!(s, "<li>{}</li>", escape(&f));
        }
        s.push_str("</ul>");
    }
    s.push_str("</section>");
}
