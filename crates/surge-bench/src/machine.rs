//! The machine a benchmark ran on.

use serde::{Deserialize, Serialize};

/// What the report prints about the machine (read from `/proc` on Linux;
/// `unknown` where a figure is not available).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Operating system and kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// 1-, 5- and 15-minute load averages when the run started.
    pub load_average: Option<[f64; 3]>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Machine {
    /// Describes this machine.
    pub fn describe() -> Machine {
        let cpu = read("/proc/cpuinfo")
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let memory_gib = read("/proc/meminfo")
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| (kb / 1_048_576.0 * 10.0).round() / 10.0);
        let kernel = match read("/proc/sys/kernel/osrelease") {
            Some(r) => format!("{} {}", std::env::consts::OS, r.trim()),
            None => std::env::consts::OS.to_owned(),
        };
        let hostname = read("/proc/sys/kernel/hostname")
            .map_or_else(|| "unknown".to_owned(), |h| h.trim().to_owned());
        let load_average = read("/proc/loadavg").and_then(|s| {
            let v: Vec<f64> = s
                .split_whitespace()
                .take(3)
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3).then(|| [v[0], v[1], v[2]])
        });
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            kernel,
            hostname,
            load_average,
        }
    }
}
