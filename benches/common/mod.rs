//! What every bench needs besides its measurement: knowing whether it runs as a benchmark or as a
//! smoke test, describing the machine (figures mean nothing without it), and writing the figures to
//! `benches/results/<name>.md` so they can be committed next to the code that produced them.
//!
//! Included by each bench as `#[path = "common/mod.rs"] mod common;` (Cargo builds only
//! `benches/*.rs` and `benches/*/main.rs` as targets, so this file is never a bench of its own).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// Whether this run is a real benchmark. `cargo bench` passes `--bench`; `cargo test --all-targets`
/// runs bench targets too, without it, and then a bench only checks that it still works (smoke
/// mode): few iterations, and no results file.
pub fn is_bench_run() -> bool {
    std::env::args().skip(1).any(|a| a == "--bench")
}

/// The conditions a run happened in, printed above its figures.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// UTC date and time the run started.
    pub date: String,
    /// Logical CPUs available to the process.
    pub cpus: usize,
    /// CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// `rustc --version`.
    pub rustc: String,
    /// `git rev-parse --short HEAD`, with `+dirty` when the tree has uncommitted changes.
    pub commit: String,
    /// 1/5/15-minute load averages when the run started (other builds share the machine).
    pub load_at_start: String,
    /// The command that reproduces the run.
    pub command: String,
}

impl RunInfo {
    /// Captures the run conditions now; `command` is how to reproduce the run.
    pub fn capture(command: impl Into<String>) -> RunInfo {
        RunInfo {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(),
            rustc: command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
            commit: commit(),
            load_at_start: load_average(),
            command: command.into(),
        }
    }

    /// The header block of a results file (Markdown list).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "- Date: {}", self.date);
        let _ = writeln!(s, "- Command: `{}`", self.command);
        let _ = writeln!(
            s,
            "- Machine: {} CPUs ({}), {}",
            self.cpus, self.cpu_model, self.rustc
        );
        let _ = writeln!(s, "- Commit: {}", self.commit);
        let _ = writeln!(
            s,
            "- Load average (1/5/15 min) at start: {}, at end: {}",
            self.load_at_start,
            load_average()
        );
        s
    }
}

/// The 1/5/15-minute load averages, e.g. `0.92 0.43 0.75`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn commit() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let Some(head) = command_output("git", &["-C", dir, "rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    let dirty =
        command_output("git", &["-C", dir, "status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}+dirty") } else { head }
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A plain table, rendered both for the terminal and as Markdown.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(wi) = w.get_mut(i) {
                    *wi = (*wi).max(cell.chars().count());
                }
            }
        }
        w
    }

    /// A Markdown table with aligned columns (also readable on a terminal).
    pub fn markdown(&self) -> String {
        let w = self.widths();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = w.get(i).copied().unwrap_or(0)))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut s = line(&self.header);
        let rule: Vec<String> = w.iter().map(|n| "-".repeat(*n)).collect();
        s.push_str(&line(&rule));
        for row in &self.rows {
            s.push_str(&line(row));
        }
        s
    }
}

/// Writes `benches/results/<name>.md` and returns its path.
pub fn write_results(name: &str, text: &str) -> std::io::Result<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/results"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.md"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Writes `benches/results/<name>.json` (pretty-printed) and returns its path.
#[allow(dead_code)] // not every bench writes JSON
pub fn write_json(name: &str, value: &serde_json::Value) -> std::io::Result<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/results"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(&path, text)?;
    Ok(path)
}

impl RunInfo {
    /// The run conditions as JSON (`machine`, `rustc`, `commit`, `date`, ...).
    #[allow(dead_code)] // not every bench writes JSON
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "date": self.date,
            "command": self.command,
            "machine": {"cpus": self.cpus, "cpu_model": self.cpu_model},
            "rustc": self.rustc,
            "commit": self.commit,
            "load_at_start": self.load_at_start,
            "load_at_end": load_average(),
        })
    }
}

/// The value at quantile `q` (0.0-1.0, nearest rank) of `sorted`, which must be sorted.
#[allow(dead_code)] // not every bench reports quantiles
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}
