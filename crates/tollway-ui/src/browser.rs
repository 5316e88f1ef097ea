//! Headless Chromium for tests: dump a page's DOM after its scripts ran, take a
//! screenshot, and find elements with their attributes in the dumped DOM.
//!
//! Uses Debian's package (`apt-get install -y chromium`, binary `/usr/bin/chromium`).
//! Each run gets a fresh profile directory (removed afterwards), runs in its own process
//! group, and is killed (the whole group) if it outlives [`BrowserOptions::timeout`].
//! The functions block: from async code, call them inside `tokio::task::spawn_blocking`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How to run Chromium.
#[derive(Debug, Clone)]
pub struct BrowserOptions {
    /// The browser binary.
    pub chromium: PathBuf,
    /// Wall-clock limit for one run; the browser's process group is killed after it.
    pub timeout: Duration,
    /// `--virtual-time-budget`: how much page time (timers, fetches) runs before the DOM is
    /// dumped or the screenshot taken.
    pub virtual_time_budget_ms: u64,
    /// `--window-size` (width, height) in CSS pixels.
    pub window_size: (u32, u32),
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            chromium: PathBuf::from(CHROMIUM),
            timeout: Duration::from_secs(60),
            virtual_time_budget_ms: 5000,
            window_size: (1280, 900),
        }
    }
}

/// Why a browser run failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "{path} not found: headless Chromium is needed for this test; install it with \
         `apt-get install -y chromium`"
    )]
    ChromiumMissing { path: PathBuf },
    #[error("starting {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a temporary Chromium profile directory: {0}")]
    TempDir(#[source] std::io::Error),
    #[error("waiting for Chromium: {0}")]
    Wait(#[source] std::io::Error),
    #[error("Chromium ran over {timeout:?} loading {url} and was killed; stderr tail:\n{stderr}")]
    Timeout {
        url: String,
        timeout: Duration,
        stderr: String,
    },
    #[error("Chromium exited with {status} loading {url}; stderr tail:\n{stderr}")]
    Failed {
        url: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("Chromium printed no DOM for {url}; stderr tail:\n{stderr}")]
    EmptyDom { url: String, stderr: String },
    #[error("Chromium wrote no PNG screenshot to {path} for {url}; stderr tail:\n{stderr}")]
    NoScreenshot {
        url: String,
        path: PathBuf,
        stderr: String,
    },
}

/// The DOM of `url` after its scripts ran for the default virtual-time budget (5 s).
pub fn render_dom(url: &str) -> Result<String, BrowserError> {
    render_dom_with(url, &BrowserOptions::default())
}

/// [`render_dom`] with explicit options.
pub fn render_dom_with(url: &str, options: &BrowserOptions) -> Result<String, BrowserError> {
    let out = run(url, options, &["--dump-dom".to_owned()])?;
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    if dom.trim().is_empty() {
        return Err(BrowserError::EmptyDom {
            url: url.to_owned(),
            stderr: out.stderr_tail,
        });
    }
    Ok(dom)
}

/// Saves a PNG screenshot of `url` (default window 1280×900) to `path`.
pub fn screenshot(url: &str, path: &Path) -> Result<(), BrowserError> {
    screenshot_with(url, path, &BrowserOptions::default())
}

/// [`screenshot`] with explicit options.
pub fn screenshot_with(
    url: &str,
    path: &Path,
    options: &BrowserOptions,
) -> Result<(), BrowserError> {
    // A stale file from an earlier run must not pass for this one.
    let _ = std::fs::remove_file(path);
    let out = run(
        url,
        options,
        &[
            format!("--screenshot={}", path.display()),
            "--hide-scrollbars".to_owned(),
        ],
    )?;
    let mut magic = [0u8; 8];
    let is_png = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x89PNG\r\n\x1a\n";
    if !is_png {
        return Err(BrowserError::NoScreenshot {
            url: url.to_owned(),
            path: path.to_owned(),
            stderr: out.stderr_tail,
        });
    }
    Ok(())
}

struct RunOutput {
    stdout: Vec<u8>,
    stderr_tail: String,
}

fn run(url: &str, options: &BrowserOptions, extra: &[String]) -> Result<RunOutput, BrowserError> {
    if !options.chromium.is_file() {
        return Err(BrowserError::ChromiumMissing {
            path: options.chromium.clone(),
        });
    }
    let profile = tempfile::Builder::new()
        .prefix("tollway-ui-chromium-")
        .tempdir()
        .map_err(BrowserError::TempDir)?;
    let (w, h) = options.window_size;
    let mut command = Command::new(&options.chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!(
            "--virtual-time-budget={}",
            options.virtual_time_budget_ms
        ))
        .arg(format!("--window-size={w},{h}"))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the renderer and helpers too.
        .process_group(0);
    let mut child = command.spawn().map_err(|source| BrowserError::Spawn {
        path: options.chromium.clone(),
        source,
    })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_or_kill(&mut child, options.timeout);
    let stdout = join(stdout);
    let stderr_tail = tail(&join(stderr), 40);
    // The profile directory goes only after the browser is gone.
    drop(profile);
    match status {
        Ok(Some(status)) if status.success() => Ok(RunOutput {
            stdout,
            stderr_tail,
        }),
        Ok(Some(status)) => Err(BrowserError::Failed {
            url: url.to_owned(),
            status,
            stderr: stderr_tail,
        }),
        Ok(None) => Err(BrowserError::Timeout {
            url: url.to_owned(),
            timeout: options.timeout,
            stderr: stderr_tail,
        }),
        Err(err) => Err(BrowserError::Wait(err)),
    }
}

/// Waits for `child`; past `timeout`, kills its process group and returns `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // The child is not reaped yet, so its PID (= the group's id) is still ours.
            match u32_to_pid(child.id()) {
                Some(pid) => {
                    let _ = killpg(pid, Signal::SIGKILL);
                }
                None => {
                    let _ = child.kill();
                }
            }
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn u32_to_pid(id: u32) -> Option<Pid> {
    i32::try_from(id).ok().filter(|&p| p > 1).map(Pid::from_raw)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // A read error only loses output; the exit status still tells.
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    })
}

fn join(handle: Option<JoinHandle<Vec<u8>>>) -> Vec<u8> {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One start tag found in a DOM dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Lowercase tag name (`g`, `tr`, `body`, ...).
    pub tag: String,
    /// Attributes, names lowercase, values with entities decoded.
    pub attrs: BTreeMap<String, String>,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    /// Whether the `class` attribute lists `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_ascii_whitespace().any(|c| c == class))
    }
}

/// Every start tag in `html` with its attributes, in document order. Skips comments and
/// the contents of `<script>` and `<style>`. Meant for the serialized DOM Chromium
/// prints, not for arbitrary HTML.
pub fn elements(html: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if let Some(after) = rest.strip_prefix("!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'))
            .unwrap_or(rest.len());
        if name_len == 0 || !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let tag = rest[..name_len].to_ascii_lowercase();
        let (attrs, consumed) = parse_attrs(&rest[name_len..]);
        rest = &rest[name_len + consumed..];
        if tag == "script" || tag == "style" {
            let close = format!("</{tag}");
            rest = find_ci(rest, &close).map_or("", |i| &rest[i..]);
        }
        out.push(Element { tag, attrs });
    }
    out
}

/// The elements of `html` whose `class` lists `class`.
pub fn elements_with_class(html: &str, class: &str) -> Vec<Element> {
    elements(html)
        .into_iter()
        .filter(|e| e.has_class(class))
        .collect()
}

/// The `<body>` element of `html`.
pub fn body(html: &str) -> Option<Element> {
    elements(html).into_iter().find(|e| e.tag == "body")
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .to_ascii_lowercase()
        .find(&needle.to_ascii_lowercase())
}

/// Parses attributes up to and including the closing `>`; returns them and the bytes used.
fn parse_attrs(s: &str) -> (BTreeMap<String, String>, usize) {
    let bytes = s.as_bytes();
    let mut attrs = BTreeMap::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            return (attrs, i);
        }
        if bytes[i] == b'>' {
            return (attrs, i + 1);
        }
        let start = i;
        while i < bytes.len()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
            && !bytes[i].is_ascii_whitespace()
        {
            i += 1;
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let vstart = i + 1;
                let vend = s[vstart..]
                    .bytes()
                    .position(|b| b == quote)
                    .map_or(s.len(), |p| vstart + p);
                value = decode_entities(&s[vstart..vend]);
                i = (vend + 1).min(s.len());
            } else {
                let vstart = i;
                while i < bytes.len() && bytes[i] != b'>' && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = decode_entities(&s[vstart..i]);
            }
        }
        if !name.is_empty() {
            attrs.entry(name).or_insert(value);
        }
    }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_and_attributes() {
        let html = r#"<html><head><script>if (a<b && c>d) { x = '<g class="node">'; }</script>
            <style>g > rect { fill: red }</style></head>
            <body data-ready="1" data-flows="3"><!-- <g class="node" data-workload="fake"> -->
            <svg><g class="node selected" data-workload="payments/web-frontend"><rect x="1"/></g>
            <g class='edge' data-from="a&amp;b" data-to=c data-verdict="dropped"></g></svg>
            <input disabled></body></html>"#;
        let nodes = elements_with_class(html, "node");
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            nodes[0].attr("data-workload"),
            Some("payments/web-frontend")
        );
        let edges = elements_with_class(html, "edge");
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].attr("data-from"), Some("a&b"));
        assert_eq!(edges[0].attr("data-to"), Some("c"));
        let body = body(html).unwrap();
        assert_eq!(body.attr("data-ready"), Some("1"));
        assert_eq!(body.attr("data-flows"), Some("3"));
        let input = elements(html)
            .into_iter()
            .find(|e| e.tag == "input")
            .unwrap();
        assert_eq!(input.attr("disabled"), Some(""));
    }

    #[test]
    fn decodes_entities() {
        assert_eq!(
            decode_entities("a &lt;b&gt; &#39;c&#x27; &bogus; &"),
            "a <b> 'c' &bogus; &"
        );
    }

    #[test]
    fn missing_chromium_names_the_package() {
        let options = BrowserOptions {
            chromium: PathBuf::from("/nonexistent/chromium"),
            ..BrowserOptions::default()
        };
        let err = render_dom_with("about:blank", &options).unwrap_err();
        assert!(
            err.to_string().contains("apt-get install -y chromium"),
            "{err}"
        );
    }
}
