//! Worker-thread counts. More threads than a few per core only cost memory (each has its own
//! stack) and scheduling, and an absurd count (`--threads 100000`) would start that many.

/// Threads allowed per core.
pub const MAX_THREADS_PER_CORE: usize = 4;

/// `n` capped at `MAX_THREADS_PER_CORE` × the cores; `what` names the setting in the warning.
pub fn cap(n: usize, what: &str) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cap = MAX_THREADS_PER_CORE * cores;
    if n > cap {
        eprintln!("warning: {what} {n} is more than {MAX_THREADS_PER_CORE} x the {cores} core(s); using {cap}");
        return cap;
    }
    n
}
