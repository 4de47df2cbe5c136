//! Choosing a kernel by measurement: a cache of choices per shape key, the timing loop and the
//! per-thread override for tests, shared by the matmul tuner and the convolution algorithm choice.
//!
//! Choices persist across processes in `<cache dir>/tune-<kernels version>.tsv`
//! ([`crate::settings::cache_dir`]; the version hashes the kernel sources, so edited kernels are
//! measured again): one line per choice, `machine ⇥ cache ⇥ key ⇥ choice` (key and choice in their
//! `Debug` form). A process reads the file once per cache and appends each new choice as one
//! `write` to a file opened for appending, so concurrent processes add whole lines and never
//! rewrite each other's; a reader skips lines it cannot use (another machine's, a torn or foreign
//! line, a choice that is no longer a candidate). The cache only saves time: losing it costs a
//! re-measurement, and a failing cache folder is reported once and then left alone.

use crate::error::Result;
use crate::Device;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::thread::LocalKey;
use std::time::Instant;

/// Choices already measured, per key (a poisoned lock is still read: the map holds only choices),
/// backed by the cache file.
pub(crate) struct TuneCache<K, V> {
    /// Names this cache's lines in the file.
    name: &'static str,
    /// Every choice the tuner may make (stored choices are matched against these).
    candidates: fn() -> Vec<V>,
    map: Mutex<Option<HashMap<K, V>>>,
    /// This machine's stored lines of this cache, `key → choice` (read on first use).
    stored: OnceLock<HashMap<String, String>>,
}

impl<K: Hash + Eq + Clone + Debug, V: Copy + Debug> TuneCache<K, V> {
    pub(crate) const fn new(name: &'static str, candidates: fn() -> Vec<V>) -> Self {
        TuneCache {
            name,
            candidates,
            map: Mutex::new(None),
            stored: OnceLock::new(),
        }
    }

    /// The choice for `key`: made in this process, or stored by an earlier one (then it counts
    /// as made in this process too).
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        if let Some(v) = self.with_map(|map| map.get(key).copied()) {
            return Some(v);
        }
        let stored = self.stored.get_or_init(|| read_stored(self.name));
        let text = stored.get(&format!("{key:?}"))?;
        let choice = (self.candidates)()
            .into_iter()
            .find(|c| format!("{c:?}") == *text)?;
        self.with_map(|map| map.insert(key.clone(), choice));
        Some(choice)
    }

    /// Records a measured choice here and in the cache file.
    pub(crate) fn insert(&self, key: K, value: V) {
        append_stored(self.name, &format!("{key:?}"), &format!("{value:?}"));
        self.with_map(|map| map.insert(key, value));
    }

    /// Every choice made in this process, as `(key, choice)`.
    pub(crate) fn entries(&self) -> Vec<(K, V)> {
        self.with_map(|map| map.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<K, V>) -> T) -> T {
        f(self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new))
    }
}

/// The cache file of this kernels version, when caching is on.
fn cache_file() -> Option<PathBuf> {
    let dir = crate::settings::cache_dir()?;
    Some(dir.join(format!("tune-{}.tsv", dynlab_kernels::VERSION)))
}

/// What names this machine in the cache file (a shared home folder may serve several): the host
/// name.
fn machine() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_default();
        single_field(name.trim())
    })
}

/// `text` without the characters that separate fields and lines.
fn single_field(text: &str) -> String {
    text.replace(['\t', '\n', '\r'], " ")
}

/// This machine's stored choices of cache `name`, later lines winning.
fn read_stored(name: &str) -> HashMap<String, String> {
    cache_file().map_or_else(HashMap::new, |f| read_lines(&f, machine(), name))
}

/// The `key → choice` lines of `machine` and cache `name` in `file` (none if it cannot be read).
fn read_lines(file: &std::path::Path, machine: &str, name: &str) -> HashMap<String, String> {
    let Ok(text) = std::fs::read(file) else {
        return HashMap::new();
    };
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (m, c, k, v) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            (m == machine && c == name && fields.next().is_none())
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Appends one line `machine ⇥ name ⇥ key ⇥ value` to `file` in a single write to a file opened
/// for appending (creating its folder).
fn append_line(
    file: &std::path::Path,
    machine: &str,
    name: &str,
    key: &str,
    value: &str,
) -> std::io::Result<()> {
    let fields = [machine, name, key, value].map(single_field);
    let line = format!("{}\n", fields.join("\t"));
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    f.write_all(line.as_bytes())
}

/// Appends one choice to the cache file (see the module docs).
fn append_stored(name: &str, key: &str, value: &str) {
    let Some(file) = cache_file() else {
        return;
    };
    if let Err(e) = append_line(&file, machine(), name, key, value) {
        static REPORTED: OnceLock<()> = OnceLock::new();
        REPORTED.get_or_init(|| {
            eprintln!(
                "dynlab: cannot keep tuning choices in {} ({e}); they will be measured again in \
                 the next process (set DYNLAB_CACHE_DIR, or DYNLAB_CACHE=0 to stop trying)",
                file.display()
            )
        });
    }
}

/// Times each candidate and returns the fastest, or `fallback` when there is none. One untimed run
/// compiles each candidate; then three rounds time every candidate in turn (so that a burst of
/// other work on the machine slows all of them, not one), each timing a batch of runs between two
/// device syncs (as many as fill ~2 ms, at most 8, so the sync's cost does not decide between small
/// kernels); a candidate's time is its best round.
pub(crate) fn fastest<C: Copy>(
    device: &Device,
    candidates: impl IntoIterator<Item = C>,
    fallback: C,
    mut run: impl FnMut(C) -> Result<()>,
) -> Result<C> {
    let mut timed: Vec<(C, u32, f64)> = Vec::new();
    for candidate in candidates {
        run(candidate)?;
        device.sync()?;
        let start = Instant::now();
        run(candidate)?;
        device.sync()?;
        let once = start.elapsed().as_secs_f64();
        let batch = (2e-3 / once.max(1e-6)).ceil().clamp(1.0, 8.0) as u32;
        timed.push((candidate, batch, once));
    }
    for _ in 0..3 {
        for (candidate, batch, best) in timed.iter_mut() {
            let start = Instant::now();
            for _ in 0..*batch {
                run(*candidate)?;
            }
            device.sync()?;
            *best = best.min(start.elapsed().as_secs_f64() / *batch as f64);
        }
    }
    let fastest = timed.iter().min_by(|a, b| a.2.total_cmp(&b.2));
    Ok(fastest.map_or(fallback, |t| t.0))
}

/// Runs `f` with `forced` holding `choice` on this thread, then restores what it held (so forcing
/// nests), for tests that must cover every choice.
pub(crate) fn with_forced<C: Copy + 'static, T>(
    forced: &'static LocalKey<Cell<Option<C>>>,
    choice: C,
    f: impl FnOnce() -> T,
) -> T {
    let previous = forced.with(|c| c.replace(Some(choice)));
    let out = f();
    forced.with(|c| c.set(previous));
    out
}

/// The kernel choices the tuners have made in this process, one line each (`matmul …` per shape
/// class, `conv2d …` per shape), sorted: what a run records so that its numbers can be traced to
/// the kernels that produced them.
pub fn tuned_choices() -> Vec<String> {
    let mut lines = crate::ops::matmul::tuned_choices();
    lines.extend(crate::ops::conv_algorithm::tuned_choices());
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::{append_line, read_lines};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("dynlab-tune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("nested").join("tune.tsv")
    }

    /// Writers that append at once (each with its own open file, as processes do) leave every
    /// line whole.
    #[test]
    fn concurrent_appends_keep_every_line() {
        let file = scratch("concurrent");
        std::thread::scope(|s| {
            for t in 0..8 {
                let file = &file;
                s.spawn(move || {
                    for i in 0..200 {
                        let key = format!("Key {{ shape: [{t}, {i}], device: \"a\\tb\" }}");
                        append_line(file, "host", "matmul", &key, "Register(Tiling)").unwrap();
                    }
                });
            }
        });
        let stored = read_lines(&file, "host", "matmul");
        assert_eq!(stored.len(), 8 * 200);
        assert!(stored.values().all(|v| v == "Register(Tiling)"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.lines().all(|l| l.split('\t').count() == 4),
            "a torn line"
        );
        std::fs::remove_dir_all(file.parent().unwrap().parent().unwrap()).unwrap();
    }

    /// Other machines' and caches' lines, torn lines and stray text are skipped; a later line for a
    /// key wins; tabs and newlines inside a field cannot split it.
    #[test]
    fn reading_skips_what_is_not_ours() {
        let file = scratch("foreign");
        append_line(&file, "host", "matmul", "k1", "Dot").unwrap();
        append_line(&file, "other", "matmul", "k2", "Dot").unwrap();
        append_line(&file, "host", "conv2d", "k3", "Im2col").unwrap();
        append_line(&file, "host", "matmul", "k1", "Register").unwrap();
        append_line(&file, "host", "matmul", "odd\tkey\n", "Dot").unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        std::io::Write::write_all(&mut f, b"host\tmatmul\ttorn").unwrap();
        let stored = read_lines(&file, "host", "matmul");
        assert_eq!(stored.len(), 2, "{stored:?}");
        assert_eq!(stored["k1"], "Register");
        assert_eq!(stored["odd key "], "Dot");
        assert!(read_lines(&file.with_extension("missing"), "host", "matmul").is_empty());
        std::fs::remove_dir_all(file.parent().unwrap().parent().unwrap()).unwrap();
    }
}
