//! `surge bench report`: one report from saved results (of `surge bench
//! http --save`, or `surge bench queue --json`), so that runs from
//! different times sit side by side; and the outputs every bench command
//! shares.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use surge_bench::Results;

/// Outputs of a bench run or report.
#[derive(Debug, Args, Default)]
pub(crate) struct Outputs {
    /// Print the results as JSON on stdout instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the results JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) save: Option<PathBuf>,
    /// Write the HTML report (self-contained: inline SVG, no assets) here.
    #[arg(long, value_name = "FILE")]
    pub(crate) html: Option<PathBuf>,
    /// Write every chart as an SVG file into this directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) charts: Option<PathBuf>,
}

impl Outputs {
    /// Refuses output paths that cannot be written, before any load.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        for file in [&self.save, &self.html].into_iter().flatten() {
            if file.is_dir() {
                bail!("{} is a directory; give a file name", file.display());
            }
            let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent
                && !dir.is_dir()
            {
                bail!(
                    "cannot write {}: {} is not a directory",
                    file.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// Prints the table (or JSON) and writes the files asked for.
pub(crate) fn write_outputs(results: &Results, outputs: &Outputs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if outputs.json {
        out.write_all(results.to_json().as_bytes())?;
    } else {
        out.write_all(surge_bench::report::table(results).as_bytes())?;
    }
    let mut err = std::io::stderr().lock();
    if let Some(path) = &outputs.save {
        results.save(path)?;
        writeln!(err, "results written to {}", path.display())?;
    }
    if let Some(path) = &outputs.html {
        std::fs::write(path, surge_bench::report::html(results))
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(err, "report written to {}", path.display())?;
    }
    if let Some(dir) = &outputs.charts {
        let files = surge_bench::report::write_charts(results, dir)?;
        writeln!(err, "{} charts written to {}", files.len(), dir.display())?;
    }
    Ok(())
}

/// `surge bench report` flags.
#[derive(Debug, Args)]
pub(crate) struct BenchReportArgs {
    /// Results files: `surge bench http --save FILE` or `surge bench queue
    /// --json > FILE`.
    #[arg(value_name = "RESULTS.json", required = true)]
    pub(crate) files: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) outputs: Outputs,
}

/// Reads one results file of either kind.
fn read(path: &Path) -> anyhow::Result<Results> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if crate::bench_queue::is_queue_results(&text) {
        return crate::bench_queue::results_from_json(path, &text);
    }
    Ok(Results::from_json(path, &text)?)
}

/// `surge bench report`.
pub(crate) fn run(args: BenchReportArgs) -> anyhow::Result<()> {
    args.outputs.check()?;
    let docs = args
        .files
        .iter()
        .map(|f| read(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = Results::merge(docs).expect("at least one file (clap requires it)");
    if args.outputs.html.is_none() && args.outputs.save.is_none() && args.outputs.charts.is_none() {
        eprintln!("(no --html, --save or --charts: printing the table only)");
    }
    write_outputs(&merged, &args.outputs)
}
