//! The process metrics (CPU time, resident memory, open file descriptors), read from `/proc/self`
//! at each scrape. Elsewhere than Linux they are not reported.

use super::metrics::{PROCESS_CPU_SECONDS_TOTAL, PROCESS_OPEN_FDS, PROCESS_RESIDENT_MEMORY_BYTES};

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// Sets the process gauges from `/proc/self`; a figure that cannot be read is left as it was.
pub fn report() {
    if let Some(cpu) = cpu_seconds() {
        metrics::gauge!(PROCESS_CPU_SECONDS_TOTAL).set(cpu);
    }
    if let Some(rss) = resident_bytes() {
        metrics::gauge!(PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor, open while it is read, is not counted.
        metrics::gauge!(PROCESS_OPEN_FDS).set(fds.count().saturating_sub(1) as f64);
    }
}

/// User plus system time, from fields 14 and 15 of `/proc/self/stat`.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / TICKS_PER_SECOND)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // fields 3..=13
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_after_a_command_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 1000 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_resident_memory_in_bytes() {
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t    2048 kB\nThreads:\t9\n"),
            Some(2048 * 1024)
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_figures() {
        assert!(cpu_seconds().is_some());
        assert!(resident_bytes().unwrap() > 0);
    }
}
