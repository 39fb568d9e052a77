//! Reports: a terminal table, an HTML page with inline SVG charts, and the
//! charts as SVG files.

pub mod chart;
mod html;
mod table;

pub use html::html;
pub use table::{point_row, table};

use std::path::{Path, PathBuf};

use crate::BenchError;
use crate::results::Results;

/// A file-name-safe form of a title: `HTTP closed loop` → `http-closed-loop`.
pub fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_owned()
}

/// Writes every chart of every suite as `DIR/<suite>-<chart>.svg` (the
/// directory is created) and returns the paths.
///
/// # Errors
/// [`BenchError::Io`] when the directory or a file cannot be written.
pub fn write_charts(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BenchError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for suite in &results.suites {
        for (name, chart) in chart::suite_charts(suite) {
            let path = dir.join(format!("{}-{name}.svg", slug(&suite.title)));
            let mut svg = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            svg.push_str(&chart.svg());
            svg.push('\n');
            std::fs::write(&path, svg).map_err(io(&path))?;
            written.push(path);
        }
    }
    Ok(written)
}
