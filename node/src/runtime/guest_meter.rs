//! What a WASI guest uses, measured where wasmtime runs it. An OCI container's usage is
//! read from its cgroup; a guest runs inside the node's own process and has none, so its
//! resource metrics (`kubectl top`) are counted here:
//!
//! - **Memory**: the bytes of its linear memories and tables, as the store's resource
//!   limiter sees them created and grown (a guest never shrinks them). This is what the
//!   guest holds and may touch, the counterpart of a container's working set; the pooling
//!   allocator's copy-on-write images may keep fewer pages resident until written.
//! - **CPU**: the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) spent inside each
//!   poll of the guest's future. wasmtime runs the guest on a fiber of the polling thread,
//!   so that time is the guest's code and the host calls it makes (which a container's
//!   cgroup counts as well); time it spends waiting (sleeping, blocked on I/O) is outside
//!   any poll and not counted, as a sleeping process uses no CPU.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use rustix::time::{clock_gettime, ClockId};

/// Bytes per table element: a table holds references, one pointer each.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The running totals of one guest run, read by the node's metrics sampler.
#[derive(Debug, Default)]
pub struct GuestMeter {
    cpu_ns: AtomicU64,
    memory_bytes: AtomicU64,
}

impl GuestMeter {
    /// CPU time the guest consumed since it started, in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        self.cpu_ns.load(Ordering::Relaxed)
    }

    /// The size of its linear memories and tables now, in bytes, in whole host pages (what
    /// backs them: tables hold 8-byte elements, linear memories grow by 64 KiB).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
            .load(Ordering::Relaxed)
            .next_multiple_of(rustix::param::page_size() as u64)
    }
}

/// The store's resource limiter: counts every growth it lets through, and holds the guest
/// to its `resources.limits.memory`. A growth past the limit traps the guest and marks it
/// over the limit, for the runtime to report it `OOMKilled` as the kernel's OOM killer ends
/// a container that goes over its cgroup's limit. Beyond that, only the engine's own
/// maximums apply.
pub struct MemoryMeter {
    meter: Arc<GuestMeter>,
    /// The memory limit in bytes, if the container has one.
    limit: Option<u64>,
    /// The last memory growth approved, taken back if the memory then fails to grow.
    approved: usize,
    over_limit: bool,
}

impl MemoryMeter {
    pub fn new(meter: Arc<GuestMeter>, limit: Option<u64>) -> Self {
        MemoryMeter {
            meter,
            limit,
            approved: 0,
            over_limit: false,
        }
    }

    /// Whether the guest tried to grow past its memory limit (and trapped).
    pub fn over_limit(&self) -> bool {
        self.over_limit
    }

    /// Counts a growth of `bytes`, or refuses it with a trap past the limit.
    fn grow(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        let counted = &self.meter.memory_bytes;
        let after = counted.load(Ordering::Relaxed) + bytes as u64;
        if let Some(limit) = self.limit.filter(|limit| after > *limit) {
            self.over_limit = true;
            return Err(wasmtime::Error::msg(format!(
                "the guest would use {after} bytes, over its memory limit of {limit}"
            )));
        }
        counted.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(true)
    }
}

/// wasmtime asks even when `desired` is beyond `maximum` (and then fails the growth
/// anyway): refusing those keeps the count to growths that happen.
fn within(desired: usize, maximum: Option<usize>) -> bool {
    maximum.is_none_or(|max| desired <= max)
}

impl wasmtime::ResourceLimiter for MemoryMeter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !within(desired, maximum) {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current);
        let granted = self.grow(growth)?;
        self.approved = growth;
        Ok(granted)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        let approved = std::mem::take(&mut self.approved) as u64;
        let counted = &self.meter.memory_bytes;
        counted.fetch_sub(approved, Ordering::Relaxed);
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if !within(desired, maximum) {
            return Ok(false);
        }
        self.grow(desired.saturating_sub(current) * TABLE_ELEMENT_BYTES)
    }
}

/// A guest's future whose polls are charged to its meter's CPU time.
pub struct CpuTimed<F> {
    inner: Pin<Box<F>>,
    meter: Arc<GuestMeter>,
}

impl<F: Future> CpuTimed<F> {
    pub fn new(inner: F, meter: Arc<GuestMeter>) -> Self {
        CpuTimed {
            inner: Box::pin(inner),
            meter,
        }
    }
}

fn thread_cpu_ns() -> u64 {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // The poll runs on one thread from start to end (a fiber switch stays on it), so
        // the difference of this thread's clock is the poll's CPU time.
        let start = thread_cpu_ns();
        let result = self.inner.as_mut().poll(cx);
        let spent = thread_cpu_ns().saturating_sub(start);
        self.meter.cpu_ns.fetch_add(spent, Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter as _;

    use super::*;

    #[test]
    fn counts_growths_that_happen() {
        let meter = Arc::new(GuestMeter::default());
        let mut limiter = MemoryMeter::new(meter.clone(), None);
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap());
        assert!(limiter
            .memory_growing(1 << 16, 3 << 16, Some(4 << 16))
            .unwrap());
        assert!(!limiter
            .memory_growing(3 << 16, 5 << 16, Some(4 << 16))
            .unwrap());
        assert_eq!(meter.memory_bytes(), 3 << 16);
        assert!(limiter.memory_growing(3 << 16, 4 << 16, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::Error::msg("no room"))
            .unwrap();
        assert_eq!(meter.memory_bytes(), 3 << 16);
        assert!(limiter.table_growing(0, 10, None).unwrap());
        let page = rustix::param::page_size() as u64;
        assert_eq!(meter.memory_bytes(), (3 << 16) + page);
    }

    #[test]
    fn a_growth_past_the_limit_traps_and_is_not_counted() {
        let meter = Arc::new(GuestMeter::default());
        let mut limiter = MemoryMeter::new(meter.clone(), Some(4 << 16));
        assert!(limiter.memory_growing(0, 3 << 16, None).unwrap());
        assert!(limiter.table_growing(0, 10, None).unwrap());
        assert!(!limiter.over_limit());
        let refused = limiter.memory_growing(3 << 16, 4 << 16, None).unwrap_err();
        assert!(refused
            .to_string()
            .contains("over its memory limit of 262144"));
        assert!(limiter.over_limit());
        assert_eq!(meter.memory_bytes.load(Ordering::Relaxed), (3 << 16) + 80);
    }

    #[tokio::test]
    async fn charges_the_cpu_time_of_polls() {
        let meter = Arc::new(GuestMeter::default());
        // Busy for 30 ms of this thread's CPU time, however loaded the machine is.
        let busy = async {
            let start = thread_cpu_ns();
            let mut x = 0u64;
            while thread_cpu_ns() - start < 30_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            x
        };
        CpuTimed::new(busy, meter.clone()).await;
        assert!(meter.cpu_ns() >= 30_000_000, "{}", meter.cpu_ns());
    }
}
