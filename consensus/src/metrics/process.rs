//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`,
//! `process_start_time_seconds`), read from `/proc` at each scrape.
//!
//! Reading at scrape time costs the node nothing between scrapes. A file
//! that cannot be read or parsed (not Linux, a hardened `/proc`) leaves
//! its metric out of the scrape rather than failing it.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// What `/proc` says about this process, at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessSample {
    /// User plus system CPU time, in seconds.
    pub(crate) cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub(crate) resident_bytes: u64,
    /// Start time, in seconds since the Unix epoch.
    pub(crate) start_time_seconds: f64,
}

/// Parses the fields of `/proc/self/stat` this collector needs. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub(crate) fn parse_stat(
    stat: &str,
    boot_time_seconds: u64,
    ticks_per_second: u64,
    page_size: u64,
) -> Option<ProcessSample> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards; field N is at N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    let utime = field(14)?;
    let stime = field(15)?;
    let start_ticks = field(22)?;
    let rss_pages = field(24)?;
    Some(ProcessSample {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: rss_pages.saturating_mul(page_size),
        start_time_seconds: boot_time_seconds as f64 + start_ticks as f64 / ticks,
    })
}

/// The `btime` line of `/proc/stat`: when the machine booted.
pub(crate) fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

fn sample() -> Option<ProcessSample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = parse_boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    parse_stat(
        &stat,
        boot,
        u64::try_from(ticks).ok()?,
        u64::try_from(page_size).ok()?,
    )
}

fn open_fds() -> Option<u64> {
    // Counting entries opens one more descriptor (the directory's own),
    // which is not in the listing once it is read: the count is exact.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Registered once in the node's registry; encodes the process metrics at
/// each scrape.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(sample) = sample() {
            let cpu = ConstCounter::new(sample.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                cpu.metric_type(),
            )?)?;
            let resident = ConstGauge::new(sample.resident_bytes as i64);
            resident.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                resident.metric_type(),
            )?)?;
            let start = ConstGauge::new(sample.start_time_seconds);
            start.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                start.metric_type(),
            )?)?;
        }
        if let Some(count) = open_fds() {
            let fds = ConstGauge::new(count as i64);
            fds.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                fds.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A name with spaces and a parenthesis, as a process may choose.
        let stat = "4242 (vault (cli) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 150 0 0 20 0 8 0 12345 100000000 512 18446744073709551615";
        let sample = parse_stat(stat, 1_700_000_000, 100, 4096).expect("parses");
        assert_eq!(sample.cpu_seconds, 4.0, "(250 + 150) ticks at 100 Hz");
        assert_eq!(sample.resident_bytes, 512 * 4096);
        assert_eq!(sample.start_time_seconds, 1_700_000_000.0 + 123.45);
    }

    #[test]
    fn a_damaged_stat_gives_nothing_rather_than_garbage() {
        assert_eq!(parse_stat("no name here", 0, 100, 4096), None);
        assert_eq!(parse_stat("1 (x) S 1 2", 0, 100, 4096), None);
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);
        assert_eq!(
            parse_boot_time("cpu 1\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = sample().expect("/proc is readable on Linux");
        assert!(sample.resident_bytes > 0);
        assert!(sample.start_time_seconds > 1_000_000_000.0);
        assert!(open_fds().expect("fds") > 0);
    }
}
