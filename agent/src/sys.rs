//! The agent's only libc calls. Everything else is safe Rust.
#![allow(unsafe_code)] // reason: clock_gettime, sysconf, getrusage and malloc_trim have no safe std wrappers; each call only writes a struct we own or none.

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CPU time of the calling thread in nanoseconds (CLOCK_THREAD_CPUTIME_ID):
/// what the thread spent, not the wall time it waited for a core.
pub(crate) fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the calling process, all threads, in nanoseconds
/// (CLOCK_PROCESS_CPUTIME_ID).
pub(crate) fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// `clock`'s time in nanoseconds (0 if the clock cannot be read).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Clock ticks per second for `/proc/PID/stat` CPU times.
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// CPU time (user + system) of this process's waited-for children, in µs:
/// what the benchmark's load generators spent.
pub(crate) fn children_cpu_us() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Hands the allocator's free memory back to the kernel (glibc's
/// `malloc_trim`). Loading the kernel programs parses the kernel's BTF: tens
/// of MiB allocated and freed at once, which would otherwise stay resident.
pub(crate) fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a size and touches only the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Caps glibc's malloc arenas at `arenas` unless `MALLOC_ARENA_MAX` says
/// otherwise. glibc gives each thread that allocates its own arena; the
/// capture thread fills batches the export threads free, and per-thread
/// arenas kept ~15 MiB more resident under load. Call before threads start.
pub(crate) fn limit_malloc_arenas(arenas: i32) {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes two integers and touches only the allocator's own state.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = arenas;
}
