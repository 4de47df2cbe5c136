//! The run browser: one page (`ui/index.html`, built into the binary: nothing is fetched from the
//! network) with the runs grouped by sweep and, for the runs chosen, plots in four sections —
//! training curves, curvature, model properties, Adam dynamics — with log scales where they fit
//! and the values under the cursor. [`serve`] answers on 127.0.0.1: `/` (the page), `/api/runs`
//! (every run's id, name, group, config and summary, read afresh on each request) and
//! `/api/history?run=<id>` (its `history.parquet`, column by column). [`write_report`] writes the same page
//! with every run's data inside it as one HTML file.

use crate::index::{RunEntry, Store};
use dynlab_harness::History;
use dynlab_runtime::{write_atomic, Error, Result};
use serde_json::{json, Map, Value as Json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PAGE: &str = include_str!("ui/index.html");
const PLACEHOLDER: &str = "<!--DYNLAB_DATA-->";

fn toml_to_json(v: &toml::Value) -> Json {
    match v {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        other => json!(other.to_string()),
    }
}

fn entries_json(entries: &[(String, toml::Value)]) -> Json {
    Json::Object(
        entries
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect(),
    )
}

fn run_json(r: &RunEntry) -> Json {
    json!({
        "id": r.id,
        "name": r.name,
        "group": r.group,
        "config": entries_json(&r.config),
        "summary": entries_json(&r.summary),
    })
}

/// Every run of `store` as the page reads it: `{"runs": [{id, name, group, config, summary}],
/// "warnings": [folders left out]}`.
pub fn runs_json(store: &Store) -> Json {
    json!({
        "runs": store.runs().iter().map(run_json).collect::<Vec<_>>(),
        "warnings": store.warnings(),
    })
}

/// A history as `{"columns": {name: [values…]}}` (null for null cells), keeping at most
/// `max_rows` rows when given (evenly spaced, the last row always).
pub fn history_json(h: &History, max_rows: Option<usize>) -> Json {
    let n = h.rows();
    let keep: Vec<usize> = match max_rows {
        Some(m) if m >= 2 && n > m => {
            let mut rows: Vec<usize> = (0..m).map(|i| i * (n - 1) / (m - 1)).collect();
            rows.dedup();
            rows
        }
        _ => (0..n).collect(),
    };
    let mut columns = Map::new();
    for c in h.columns() {
        let values = keep
            .iter()
            .map(|&i| match &c.values[i] {
                dynlab_harness::Value::Text(t) => json!(t),
                // A single-precision value in its shortest decimal form (0.3, not 0.30000001…).
                dynlab_harness::Value::F32(x) if x.is_finite() => {
                    json!(x.to_string().parse::<f64>().unwrap_or(f64::from(*x)))
                }
                v => v.as_f64().map_or(Json::Null, |x| json!(x)),
            })
            .collect();
        columns.insert(c.name.clone(), Json::Array(values));
    }
    json!({ "columns": columns })
}

/// The page with `data` (the runs and their histories) inside it, or as served (it fetches).
pub fn page(data: Option<&Json>) -> String {
    match data {
        Some(d) => {
            // No `</script>` or `<!--` may appear inside a script element: JSON has `<` only
            // inside strings, where `\u003c` means the same.
            let text = d.to_string().replace('<', "\\u003c");
            let tag =
                format!("<script id=\"dynlab-data\" type=\"application/json\">{text}</script>");
            PAGE.replacen(PLACEHOLDER, &tag, 1)
        }
        None => PAGE.to_string(),
    }
}

/// Writes the page for every run of `store` with its history (at most `max_rows` rows each) to
/// `out`, atomically.
pub fn write_report(store: &Store, out: &Path, max_rows: usize) -> Result<()> {
    let mut data = runs_json(store);
    let mut histories = Map::new();
    for r in store.runs() {
        if r.has_history() {
            histories.insert(r.id.clone(), history_json(&r.history()?, Some(max_rows)));
        }
    }
    data["histories"] = Json::Object(histories);
    write_atomic(out, page(Some(&data)).as_bytes())
}

/// Serves the browser over the runs folder `root` on `127.0.0.1:port` (0: any free port); calls
/// `ready` with the address once listening, then answers until the process ends.
pub fn serve(root: &Path, port: u16, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    Store::open(root)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| Error::io("dynlab serve", format!("127.0.0.1:{port}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("dynlab serve", root, e))?;
    ready(addr);
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // Out of descriptors, say: wait instead of spinning.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            let _ = answer(stream, &root, addr.port());
        });
    }
    Ok(())
}

/// Reads one request (at most 64 KiB of request line and headers) and writes its response. A
/// request whose `Host` is not this machine's loopback name (a page elsewhere reaching the server
/// through DNS rebinding) is refused.
fn answer(mut stream: TcpStream, root: &Path, port: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(Read::take(stream.try_clone()?, 64 * 1024));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut host = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("host") {
                host = value.trim().to_string();
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let local = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    let (status, kind, body) = if !local.contains(&host) {
        (
            403,
            "text/plain",
            format!("host `{host}` is not this server"),
        )
    } else if method == "GET" {
        route(target, root)
    } else {
        (405, "text/plain", "only GET".to_string())
    };
    let reason = match status {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

fn route(target: &str, root: &Path) -> (u16, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let result = match path {
        "/" | "/index.html" => return (200, "text/html", page(None)),
        "/api/runs" => Store::open(root).map(|s| runs_json(&s)),
        "/api/history" => history_for(root, query),
        _ => return (404, "text/plain", format!("no page {path}")),
    };
    match result {
        Ok(json) => (200, "application/json", json.to_string()),
        Err(e) => (500, "text/plain", e.to_string()),
    }
}

fn history_for(root: &Path, query: &str) -> Result<Json> {
    let id = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("run="))
        .map(percent_decode)
        .ok_or_else(|| Error::value("dynlab serve", format!("query `{query}`"), "run=<run id>"))?;
    let store = Store::open(root)?;
    Ok(history_json(&store.run(&id)?.history()?, None))
}

/// Decodes `%XX` escapes and `+` (a space).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The report's default path: `<root>/report.html`.
pub fn default_report_path(root: &Path) -> PathBuf {
    root.join("report.html")
}
