//! Keeping vog's helper threads (reader, statistics, finishing) off the CPU the scoring loop runs
//! on.
//!
//! The scoring loop and its helpers wake each other through channels many times a second, and
//! Linux places a woken thread on the waker's CPU when it can (wake-affine). Helpers that land on
//! the loop's CPU run only while the loop waits for them, so their work adds to the loop's time
//! instead of overlapping the backend: on a 2-core machine a run of the MNIST MLP spent 10–45 ms
//! of 0.2 s waiting for them in about half the runs, and 2–4 ms in the others. So the loop notes
//! the CPU it runs on ([`LoopCpu::note`]) and each helper, between two pieces of work, moves off
//! it ([`Helper::step`]): its affinity becomes the process's minus that CPU (a system call only
//! when the loop has moved). The backend's own threads are created by the loop's thread and keep
//! their full affinity. Elsewhere than Linux, or with a single CPU, nothing changes.

use std::sync::atomic::{AtomicUsize, Ordering};

const UNKNOWN: usize = usize::MAX;

/// The CPU the scoring loop last ran on.
#[derive(Debug)]
pub(crate) struct LoopCpu(AtomicUsize);

impl LoopCpu {
    pub(crate) fn new() -> Self {
        let cpu = LoopCpu(AtomicUsize::new(UNKNOWN));
        cpu.note();
        cpu
    }

    /// Records the calling thread's CPU (a vDSO read, no system call).
    pub(crate) fn note(&self) {
        self.0
            .store(current_cpu().unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    fn get(&self) -> Option<usize> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&c| c != UNKNOWN)
    }
}

/// A helper thread's view: the CPUs it may use and the one it currently avoids.
pub(crate) struct Helper<'a> {
    cpu: &'a LoopCpu,
    #[cfg(target_os = "linux")]
    allowed: Option<libc::cpu_set_t>,
    avoided: Option<usize>,
}

impl<'a> Helper<'a> {
    /// Called on the helper thread when it starts.
    pub(crate) fn new(cpu: &'a LoopCpu) -> Self {
        #[cfg(target_os = "linux")]
        let allowed = {
            // SAFETY: `set` is a plain bit set, zero-initialized as `CPU_ZERO` would; the call
            // writes only that set and concerns only the calling thread (pid 0).
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                let ok = libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) == 0;
                (ok && libc::CPU_COUNT(&set) >= 2).then_some(set)
            }
        };
        let mut h = Helper {
            cpu,
            #[cfg(target_os = "linux")]
            allowed,
            avoided: None,
        };
        h.step();
        h
    }

    /// Moves off the loop's CPU if the loop has moved since the last call.
    pub(crate) fn step(&mut self) {
        let now = self.cpu.get();
        if now == self.avoided {
            return;
        }
        self.avoided = now;
        #[cfg(target_os = "linux")]
        if let Some(mut set) = self.allowed {
            if let Some(cpu) = now.filter(|&c| c < libc::CPU_SETSIZE as usize) {
                // SAFETY: as in `new`; `cpu` is below `CPU_SETSIZE`.
                unsafe { libc::CPU_CLR(cpu, &mut set) };
            }
            // SAFETY: as in `new`; `set` keeps at least one CPU (it had two or more).
            if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } != 0 {
                tracing::debug!("could not move a helper thread off the scoring loop's CPU");
            }
        }
    }
}

/// The CPU the calling thread runs on now, if the platform tells.
fn current_cpu() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `sched_getcpu` has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 {
            return Some(cpu as usize);
        }
    }
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn affinity() -> libc::cpu_set_t {
        // SAFETY: as in `Helper::new`.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set);
            set
        }
    }

    fn affinity_of_process() -> libc::cpu_set_t {
        // SAFETY: as in `Helper::new`, for the whole process (its main thread's set).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(libc::getpid(), std::mem::size_of_val(&set), &mut set);
            set
        }
    }

    #[test]
    fn a_helper_follows_the_loop_off_its_cpu() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let lp = LoopCpu::new();
        let Some(first) = lp.get() else { return };
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut h = Helper::new(&lp);
                let set = affinity();
                if cpus < 2 {
                    // SAFETY: reading a bit of a set.
                    assert!(unsafe { libc::CPU_ISSET(first, &set) });
                    return;
                }
                // SAFETY: reading bits and counting a set.
                unsafe {
                    assert!(!libc::CPU_ISSET(first, &set));
                    assert_eq!(libc::CPU_COUNT(&set) as usize, cpus - 1);
                }
                // The loop moves: the helper gives the old CPU back and leaves the new one.
                let all = affinity_of_process();
                // SAFETY: reading bits of a set.
                let other = (0..libc::CPU_SETSIZE as usize)
                    .find(|&c| c != first && unsafe { libc::CPU_ISSET(c, &all) })
                    .unwrap();
                lp.0.store(other, Ordering::Relaxed);
                h.step();
                let set = affinity();
                // SAFETY: reading bits of a set.
                unsafe {
                    assert!(libc::CPU_ISSET(first, &set));
                    assert!(!libc::CPU_ISSET(other, &set));
                }
            });
        });
    }
}
