//! Ctrl-C during [`run_experiment`](crate::run_experiment): the first SIGINT (or SIGTERM) asks the
//! run to stop after the unit in progress, checkpoint and return an error saying how to resume; the
//! handler restores the default action at once, so a second Ctrl-C ends the process immediately
//! (losing only the work since the last checkpoint). The previous handlers come back when the last
//! run in progress in the process ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: signal(2) is async-signal-safe; the next such signal takes its default action.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

/// Runs in progress in this process and the handlers that were there before the first.
static ACTIVE: Mutex<(usize, Vec<(libc::c_int, libc::sighandler_t)>)> = Mutex::new((0, Vec::new()));

/// A run in progress; the last one to end restores the previous handlers.
pub(crate) struct Guard;

/// Installs the handlers (if no other run in this process has) for the life of the guard.
pub(crate) fn install() -> Guard {
    let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    if active.0 == 0 {
        REQUESTED.store(false, Ordering::SeqCst);
        let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: the handler only stores to an atomic and calls signal(2), both
        // async-signal-safe.
        active.1 = [libc::SIGINT, libc::SIGTERM]
            .into_iter()
            .map(|s| (s, unsafe { libc::signal(s, handler) }))
            .collect();
    }
    active.0 += 1;
    Guard
}

/// Whether a stop was asked for since the handlers were installed.
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
        active.0 -= 1;
        if active.0 == 0 {
            for (signal, handler) in std::mem::take(&mut active.1) {
                // SAFETY: restores a disposition signal(2) returned.
                unsafe { libc::signal(signal, handler) };
            }
        }
    }
}
