//! Ctrl-C during [`run_experiment`](crate::run_experiment): the first SIGINT (or SIGTERM) asks the
//! run to stop after the unit in progress, checkpoint and return an error saying how to resume; the
//! handler restores the default action at once, so a second Ctrl-C ends the process immediately
//! (losing only the work since the last checkpoint). The previous handlers come back when the run
//! ends.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
    // SAFETY: signal(2) is async-signal-safe; the next such signal takes its default action.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
}

/// The installed handlers; dropping it restores the previous ones.
pub(crate) struct Guard {
    previous: [(libc::c_int, libc::sighandler_t); 2],
}

/// Installs the handlers for the duration of the returned guard.
pub(crate) fn install() -> Guard {
    REQUESTED.store(false, Ordering::SeqCst);
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic and calls signal(2), both async-signal-safe.
    let previous = [libc::SIGINT, libc::SIGTERM].map(|s| (s, unsafe { libc::signal(s, handler) }));
    Guard { previous }
}

/// Whether a stop was asked for since [`install`].
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

impl Drop for Guard {
    fn drop(&mut self) {
        for (signal, handler) in self.previous {
            // SAFETY: restores a disposition signal(2) returned.
            unsafe { libc::signal(signal, handler) };
        }
    }
}
