//! The node's own usage, as kubelet reports it for the node (from the root cgroup): the
//! CPU time all its processors spent busy, and its memory working set.
//!
//! - CPU: `/proc/stat`'s first line, every state but `idle` and `iowait` (the time a root
//!   cgroup's `cpu.stat` counts), from clock ticks to nanoseconds.
//! - Memory: kubelet's working set is usage − `inactive_file`. A cgroup v2 root has no
//!   `memory.current`, so (as cAdvisor does for it) usage is `MemTotal − MemFree` of
//!   `/proc/meminfo`, and `inactive_file` is its `Inactive(file)`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no {field}")]
    Missing { path: PathBuf, field: &'static str },
}

/// The node's cumulative CPU time and its working set now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostUsage {
    pub cpu_ns: u64,
    pub memory_bytes: u64,
}

const STAT: &str = "/proc/stat";
const MEMINFO: &str = "/proc/meminfo";

pub fn read() -> Result<HostUsage, HostError> {
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|source| HostError::Read {
            path: path.into(),
            source,
        })
    };
    let missing = |path: &str, field| HostError::Missing {
        path: path.into(),
        field,
    };
    let ticks = busy_ticks(&read(STAT)?).ok_or_else(|| missing(STAT, "cpu line"))?;
    let memory = working_set(&read(MEMINFO)?).map_err(|field| missing(MEMINFO, field))?;
    Ok(HostUsage {
        cpu_ns: ticks.saturating_mul(1_000_000_000) / rustix::param::clock_ticks_per_second(),
        memory_bytes: memory,
    })
}

/// The ticks of `/proc/stat`'s aggregate `cpu` line spent neither idle nor waiting for I/O.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is within user and nice).
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = fields[..] else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// `MemTotal − MemFree − Inactive(file)`, in bytes; `Err` names a missing field.
fn working_set(meminfo: &str) -> Result<u64, &'static str> {
    let kib = |field: &'static str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches(" kB").parse::<u64>().ok())
            .ok_or(field)
    };
    let usage = kib("MemTotal")?.saturating_sub(kib("MemFree")?);
    Ok(usage.saturating_sub(kib("Inactive(file)")?) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 20 30 5000 40 1 2 3 0 0\ncpu0 50 10 15 2500 20 0 1 1 0 0\n";
        assert_eq!(busy_ticks(stat), Some(100 + 20 + 30 + 1 + 2 + 3));
        assert_eq!(busy_ticks("intr 1 2\n"), None);
    }

    #[test]
    fn working_set_is_usage_without_inactive_file() {
        let meminfo = "MemTotal:       1000 kB\nMemFree:         300 kB\nInactive(file):  200 kB\n";
        assert_eq!(working_set(meminfo), Ok(500 * 1024));
        assert_eq!(working_set("MemTotal: 1 kB\n"), Err("MemFree"));
    }

    #[test]
    fn this_node_has_usage() {
        let usage = read().unwrap();
        assert!(usage.cpu_ns > 0 && usage.memory_bytes > 0, "{usage:?}");
    }
}
