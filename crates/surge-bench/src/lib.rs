//! surge's load benchmark: an HTTP load generator (a lean HTTP/1.1 client
//! on `httparse`, or hyper's) with closed- and open-loop models (the open
//! loop corrects coordinated omission), HDR histograms whose memory does
//! not grow with the run, a versioned results document, and
//! self-contained HTML reports with SVG charts.
//!
//! ```no_run
//! use std::time::Duration;
//! use surge_bench::{LoadModel, Plan, Stop, Target, sweep};
//!
//! let targets = vec![Target::parse("surge=http://127.0.0.1:8000/health")?];
//! let plan = Plan::new(
//!     LoadModel::closed(vec![10, 100])?,
//!     Stop::Duration(Duration::from_secs(5)),
//!     Duration::from_secs(1),
//!     Duration::from_secs(10),
//!     2,
//! )?;
//! let results = sweep(&targets, &plan, &surge_bench::Abort::new(), &mut |_| {})?;
//! std::fs::write("bench.html", surge_bench::report::html(&results))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod engine;
mod error;
pub mod machine;
pub mod plan;
pub mod report;
pub mod results;
mod sweep;
mod target;

pub use engine::{Abort, Level, Progress, run_level};
pub use error::BenchError;
pub use plan::{Client, LoadModel, Plan, Stop, parse_duration};
pub use results::{Latency, Point, Results, Series, Suite};
pub use sweep::{Event, sweep};
pub use target::{Target, TargetInfo};
