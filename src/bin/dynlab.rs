//! The `dynlab` command line (see `dynlab::cli`): `dynlab run <program> ...`, `dynlab sweep ...`,
//! `dynlab runs ...`, `dynlab serve ...`, `dynlab report ...`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    #[cfg_attr(not(unix), allow(unused_variables))]
    let prints_only = matches!(
        args.first().map(String::as_str),
        Some("programs" | "runs" | "help")
    ) || args.iter().any(|a| a == "--dry-run" || a == "status");
    #[cfg(unix)]
    if prints_only {
        // A command that only prints ends quietly when its reader goes away (`dynlab runs R | head`),
        // as command-line tools do; the server and the sweep runners keep Rust's default (ignored).
        // SAFETY: signal(2) at start-up, before any thread exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Err(e) = dynlab::cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
