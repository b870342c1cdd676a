//! Process metrics (CPU time, resident and virtual memory, open and max file descriptors, start
//! time) read from `/proc/self` at scrape time on Linux; nothing is reported elsewhere.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The kernel's `USER_HZ`: the unit of CPU times in `/proc/<pid>/stat`. It is 100 on every
/// architecture Linux supports for user space (it is part of the ABI, unlike `HZ`).
const USER_HZ: f64 = 100.0;

/// A snapshot of this process's resource use. Fields are `None` where the platform or the
/// sandbox does not expose them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory size, in bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// Number of open file descriptors.
    pub open_fds: Option<u64>,
    /// Soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// Start time of the process since the Unix epoch, in seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current process's statistics (all `None` on platforms without `/proc`).
    pub fn read() -> Self {
        read_linux().unwrap_or_default()
    }
}

/// Bounded read of a small `/proc` file.
fn read_proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_linux() -> Option<ProcessStats> {
    let stat = read_proc("/proc/self/stat")?;
    // The command name is in parentheses and may contain spaces; fields restart after `)`.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is at index N - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let cpu_seconds = match (field(14), field(15)) {
        (Some(utime), Some(stime)) => Some((utime + stime) as f64 / USER_HZ),
        _ => None,
    };
    let virtual_memory_bytes = field(23);
    let start_ticks = field(22);

    let status = read_proc("/proc/self/status").unwrap_or_default();
    let resident_memory_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(parse_kib);

    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| dir.filter(Result::is_ok).count() as u64);

    let max_fds = read_proc("/proc/self/limits").and_then(|limits| {
        limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|soft| soft.parse::<u64>().ok())
    });

    let boot_time = read_proc("/proc/stat").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let start_time_seconds = match (boot_time, start_ticks) {
        (Some(boot), Some(ticks)) => Some(boot as f64 + ticks as f64 / USER_HZ),
        _ => None,
    };

    Some(ProcessStats {
        cpu_seconds,
        resident_memory_bytes,
        virtual_memory_bytes,
        open_fds,
        max_fds,
        start_time_seconds,
    })
}

/// Parses `   1234 kB` into bytes.
fn parse_kib(rest: &str) -> Option<u64> {
    let mut parts = rest.split_whitespace();
    let value = parts.next()?.parse::<u64>().ok()?;
    match parts.next() {
        Some("kB") => value.checked_mul(1024),
        _ => None,
    }
}

/// Encodes [`ProcessStats`] as the standard `process_*` families on every scrape.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: Option<f64>,
) -> Result<(), std::fmt::Error> {
    if let Some(value) = value {
        let metric = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)?;
    }
    Ok(())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = ProcessStats::read();
        if let Some(cpu) = stats.cpu_seconds {
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(metric)?;
        }
        let to_f64 = |v: Option<u64>| v.map(|v| v as f64);
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size",
            None,
            to_f64(stats.resident_memory_bytes),
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size",
            None,
            to_f64(stats.virtual_memory_bytes),
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Number of open file descriptors",
            None,
            to_f64(stats.open_fds),
        )?;
        gauge(
            &mut encoder,
            "process_max_fds",
            "Soft limit on open file descriptors",
            None,
            to_f64(stats.max_fds),
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            None,
            stats.start_time_seconds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_parsing() {
        assert_eq!(parse_kib("   1234 kB"), Some(1234 * 1024));
        assert_eq!(parse_kib("1234"), None);
        assert_eq!(parse_kib("x kB"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process_on_linux() {
        let stats = ProcessStats::read();
        assert!(stats.resident_memory_bytes.is_some_and(|v| v > 0));
        assert!(stats.open_fds.is_some_and(|v| v >= 1));
        assert!(stats.max_fds.is_some_and(|v| v >= 1));
        assert!(stats.cpu_seconds.is_some());
        assert!(stats.start_time_seconds.is_some_and(|v| v > 1.0e9));
    }
}
