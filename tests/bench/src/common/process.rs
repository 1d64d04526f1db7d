//! A process's memory and CPU, read from `/proc` (the operator's, and Kueue's manager's).

use std::time::Duration;

use anyhow::Context as _;

/// What a process used so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessUsage {
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// User + system CPU time.
    pub cpu: Duration,
}

impl ProcessUsage {
    /// The usage of process `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status (is the process running?)"))?;
        let peak_rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/PID/status")?;
        // utime and stime: fields 14 and 15, counted after the parenthesised command name.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        Ok(Self {
            peak_rss_kib,
            // USER_HZ is 100 on Linux.
            cpu: Duration::from_millis(ticks * 10),
        })
    }

    /// The peak RSS in MiB, for tables.
    pub fn peak_rss_mib(&self) -> f64 {
        self.peak_rss_kib as f64 / 1024.0
    }
}
