//! The benchmarks' memory gauges: a counting allocator (live heap bytes and their peak, so a
//! report separates what the code holds from what the allocator keeps) and this process's resident
//! memory from `/proc` (Linux). A binary opts in with
//! `#[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator;`.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct CountingAllocator;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

pub fn heap_live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / MIB
}

pub fn heap_peak_mib() -> f64 {
    PEAK.load(Ordering::Relaxed) as f64 / MIB
}

pub fn reset_heap_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

fn status_kib(field: &str) -> f64 {
    proc_status_kib("self", field)
}

/// A field of `/proc/<pid>/status` in KiB (0 when absent).
fn proc_status_kib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Peak resident memory of this process since the last reset, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

/// Resident memory backed by files (the binary's code and libraries, not data), in MiB.
pub fn file_rss_mib() -> f64 {
    status_kib("RssFile:") / 1024.0
}

pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Another process's memory and CPU, read from `/proc/<pid>` (Linux): how a benchmark reports
/// the simulator it runs as a child.
pub struct ProcessGauge {
    pid: String,
}

/// Linux reports CPU time in clock ticks of `USER_HZ`, 100 on every architecture Rust targets
/// (the value `sysconf(_SC_CLK_TCK)` returns).
const USER_HZ: f64 = 100.0;

impl ProcessGauge {
    pub fn of(pid: u32) -> Self {
        ProcessGauge { pid: pid.to_string() }
    }

    /// This process.
    pub fn current() -> Self {
        ProcessGauge { pid: "self".to_owned() }
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        proc_status_kib(&self.pid, "VmRSS:") / 1024.0
    }

    /// Peak resident memory, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        proc_status_kib(&self.pid, "VmHWM:") / 1024.0
    }

    /// User and system CPU time used so far, in seconds (all threads).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // The command name (field 2) is in parentheses and may hold spaces: count from after it.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let ticks: f64 = after_name.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<f64>().ok()).sum();
        ticks / USER_HZ
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gauge_reads_this_process() {
        let me = ProcessGauge::current();
        // The peak read after the resident size: other tests of this binary allocate meanwhile,
        // so a resident size read after the peak may exceed it.
        let rss = me.rss_mib();
        let peak = me.peak_rss_mib();
        assert!(rss > 0.0 && peak >= rss, "rss {rss} MiB, peak {peak} MiB");
        // Burn some CPU and see the count move.
        let before = me.cpu_seconds();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        assert!(me.cpu_seconds() > before, "cpu time did not move");
        assert_eq!(ProcessGauge::of(std::process::id()).pid, std::process::id().to_string());
    }
}
