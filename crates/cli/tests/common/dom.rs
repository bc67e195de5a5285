//! A page as headless Chromium leaves it: `chromium --dump-dom` after the page's scripts
//! ran, read back into a small tree. Shared by the report tests and the report benchmark.
//!
//! The reader knows only what Chromium's serializer writes (every non-void element closed,
//! attribute values double-quoted, `script` and `style` raw), which is all it is for.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What Chromium printed for one page.
pub struct Dumped {
    /// The DOM, serialized.
    pub html: String,
    /// Chromium's log, with the page's console messages (`--enable-logging=stderr`).
    pub log: String,
    /// The whole run of the process: start, load, scripts, dump, exit.
    pub took: Duration,
}

/// Opens `page` in headless Chromium (a fresh profile under `scratch`) and dumps its DOM
/// once it has loaded and its scripts and first frame have run.
pub fn dump(page: &Path, scratch: &Path) -> Dumped {
    let profile = scratch.join(format!("chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let started = Instant::now();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/setup installs it)");
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&profile);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed ({:?}):\n{log}", out.status);
    Dumped { html: String::from_utf8_lossy(&out.stdout).into_owned(), log, took }
}

/// Takes a PNG screenshot of `page` at `width`×`height` CSS pixels.
pub fn screenshot(page: &Path, png: &Path, scratch: &Path, width: u32, height: u32) {
    let profile = scratch.join(format!("chromium-shot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(out.status.success(), "chromium --screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The page's script errors, from Chromium's log.
pub fn script_errors(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("CONSOLE") && (l.contains("Uncaught") || l.contains("Error"))).collect()
}

/// An element: its name, attributes and children.
#[derive(Debug, Default)]
pub struct Element {
    /// Lower-case tag name; `#document` for the root.
    pub name: String,
    /// Attributes in order, values decoded.
    pub attrs: Vec<(String, String)>,
    /// Child nodes.
    pub children: Vec<Node>,
}

/// A node of the tree.
#[derive(Debug)]
pub enum Node {
    /// An element.
    Element(Element),
    /// Text, decoded.
    Text(String),
}

const VOID: [&str; 14] =
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the element's `class` attribute lists `class`.
    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class").is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }

    /// Every element under this one (depth first, document order) for which `pred` holds.
    pub fn find_all<'a>(&'a self, pred: &dyn Fn(&Element) -> bool) -> Vec<&'a Element> {
        let mut found = Vec::new();
        self.walk(pred, &mut found);
        found
    }

    fn walk<'a>(&'a self, pred: &dyn Fn(&Element) -> bool, found: &mut Vec<&'a Element>) {
        for child in &self.children {
            if let Node::Element(e) = child {
                if pred(e) {
                    found.push(e);
                }
                e.walk(pred, found);
            }
        }
    }

    /// The first element with `id`.
    pub fn by_id(&self, id: &str) -> Option<&Element> {
        self.find_all(&|e| e.attr("id") == Some(id)).into_iter().next()
    }

    /// Child elements named `name`.
    pub fn children_named<'a>(&'a self, name: &str) -> Vec<&'a Element> {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Element(e) if e.name == name => Some(e),
                _ => None,
            })
            .collect()
    }

    /// All the text under this element.
    pub fn text(&self) -> String {
        let mut text = String::new();
        self.collect_text(&mut text);
        text
    }

    fn collect_text(&self, text: &mut String) {
        for child in &self.children {
            match child {
                Node::Text(t) => text.push_str(t),
                Node::Element(e) => e.collect_text(text),
            }
        }
    }
}

/// Reads Chromium's serialization of a document.
pub fn parse(html: &str) -> Element {
    let mut stack: Vec<Element> = vec![Element { name: "#document".into(), ..Element::default() }];
    let mut rest = html;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
        } else if rest.starts_with("<!") {
            rest = rest.find('>').map_or("", |end| &rest[end + 1..]);
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').unwrap_or(after.len());
            let name = after[..end].trim().to_ascii_lowercase();
            rest = after.get(end + 1..).unwrap_or("");
            // Close up to the matching element.
            if stack.iter().skip(1).any(|e| e.name == name) {
                while let Some(element) = stack.pop() {
                    let done = element.name == name;
                    stack.last_mut().expect("the document stays").children.push(Node::Element(element));
                    if done {
                        break;
                    }
                }
            }
        } else if rest.starts_with('<') && rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            let (element, self_closing, after) = start_tag(&rest[1..]);
            rest = after;
            let raw = element.name == "script" || element.name == "style";
            if VOID.contains(&element.name.as_str()) || self_closing {
                stack.last_mut().expect("the document stays").children.push(Node::Element(element));
            } else if raw {
                let close = format!("</{}", element.name);
                let end = rest.find(&close).unwrap_or(rest.len());
                let mut element = element;
                element.children.push(Node::Text(rest[..end].to_string()));
                rest = &rest[end..];
                rest = rest.find('>').map_or("", |e| &rest[e + 1..]);
                stack.last_mut().expect("the document stays").children.push(Node::Element(element));
            } else {
                stack.push(element);
            }
        } else {
            let first = rest.chars().next().map_or(1, char::len_utf8);
            let end = rest[first..].find('<').map_or(rest.len(), |i| i + first);
            stack.last_mut().expect("the document stays").children.push(Node::Text(decode(&rest[..end])));
            rest = &rest[end..];
        }
    }
    while stack.len() > 1 {
        let element = stack.pop().expect("more than one");
        stack.last_mut().expect("the document stays").children.push(Node::Element(element));
    }
    stack.pop().expect("the document")
}

/// A start tag after its `<`: the element, whether it closed itself, the rest.
fn start_tag(s: &str) -> (Element, bool, &str) {
    let name_end = s.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(s.len());
    let mut element = Element { name: s[..name_end].to_ascii_lowercase(), ..Element::default() };
    let mut rest = &s[name_end..];
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("/>") {
            return (element, true, after);
        }
        if let Some(after) = rest.strip_prefix('>') {
            return (element, false, after);
        }
        if rest.is_empty() {
            return (element, false, rest);
        }
        let end = rest.find(|c: char| c == '=' || c == '>' || c.is_whitespace() || c == '/').unwrap_or(rest.len());
        let name = rest[..end].to_string();
        rest = &rest[end..];
        if let Some(after) = rest.strip_prefix("=\"") {
            let close = after.find('"').unwrap_or(after.len());
            element.attrs.push((name, decode(&after[..close])));
            rest = after.get(close + 1..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('=') {
            let close = after.find(|c: char| c.is_whitespace() || c == '>').unwrap_or(after.len());
            element.attrs.push((name, decode(&after[..close])));
            rest = &after[close..];
        } else {
            if name.is_empty() {
                // A stray character: skip it.
                rest = &rest[rest.chars().next().map_or(0, char::len_utf8)..];
                continue;
            }
            element.attrs.push((name, String::new()));
        }
    }
}

/// Decodes the character references Chromium writes.
fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|&e| e < 12);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "nbsp" => Some('\u{a0}'),
                _ => entity
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
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

/// What a `ferry report --format html` page shows, read from its DOM.
pub struct ReportPage {
    /// Whether the page's script ran to its end (it marks `<html data-ready>`).
    pub ready: bool,
    /// Each timeline lane: its host and the `data-a` (attempt index) of each of its bars.
    pub lanes: Vec<(String, Vec<usize>)>,
    /// The VM table's header cells.
    pub header: Vec<String>,
    /// The VM table's rows, cell texts.
    pub rows: Vec<Vec<String>>,
    /// The script's data (`<script id="data">`): `a` has one entry per attempt.
    pub data: serde_json::Value,
    /// The failures list's items, as text.
    pub failures: Vec<String>,
}

/// Reads a report page from Chromium's DOM dump.
pub fn report_page(html: &str) -> ReportPage {
    let doc = parse(html);
    let ready = doc.find_all(&|e| e.name == "html").first().is_some_and(|h| h.attr("data-ready").is_some());
    let lanes = doc
        .find_all(&|e| e.name == "g" && e.has_class("lane"))
        .into_iter()
        .map(|lane| {
            let host = lane.attr("data-host").expect("a lane names its host").to_string();
            let bars = lane
                .find_all(&|e| e.name == "rect")
                .into_iter()
                .map(|r| r.attr("data-a").and_then(|a| a.parse().ok()).expect("a bar names its attempt"))
                .collect();
            (host, bars)
        })
        .collect();
    let table = doc.by_id("vms").expect("the VM table");
    let header = table.find_all(&|e| e.name == "th").into_iter().map(Element::text).collect();
    let rows = table
        .find_all(&|e| e.name == "tbody")
        .into_iter()
        .flat_map(|body| body.children_named("tr"))
        .map(|tr| tr.children_named("td").into_iter().map(Element::text).collect())
        .collect();
    let data = doc.by_id("data").map(Element::text).expect("the script's data");
    let data = serde_json::from_str(&data).expect("the data is JSON");
    let failures = doc
        .by_id("failures")
        .map(|f| f.find_all(&|e| e.name == "li").into_iter().map(Element::text).collect())
        .unwrap_or_default();
    ReportPage { ready, lanes, header, rows, data, failures }
}

/// A page open in headless Chromium, driven through the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands on Chromium's fd 3, answers on its fd 4, each a
/// JSON message ended by a NUL): for what a DOM dump cannot show, such as hovering,
/// clicking, and the page's own timings.
pub struct Browser {
    child: std::process::Child,
    to: std::io::PipeWriter,
    from: std::io::BufReader<std::io::PipeReader>,
    next_id: u64,
    session: String,
    profile: std::path::PathBuf,
}

impl Browser {
    /// Starts Chromium (a fresh profile under `scratch`, a 1280×900 window) and opens
    /// `page`; returns once its load event fired.
    pub fn open(page: &Path, scratch: &Path) -> Browser {
        Browser::open_url(&format!("file://{}", page.display()), scratch)
    }

    /// Starts Chromium as [`Browser::open`] does and opens `url`.
    pub fn open_url(url: &str, scratch: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;

        let (from, chromium_writes) = std::io::pipe().expect("pipe");
        let (chromium_reads, to) = std::io::pipe().expect("pipe");
        let (read_fd, write_fd) = (chromium_reads.as_raw_fd(), chromium_writes.as_raw_fd());
        let profile = scratch.join(format!("chromium-cdp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let mut command = Command::new("chromium");
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"])
            .arg("--window-size=1280,900")
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: between fork and exec the closure only calls fcntl and dup2, which are
        // async-signal-safe. Both ends are first copied above 10: a pipe end that already
        // is 3 or 4 would keep its close-on-exec through dup2 onto itself, or be
        // overwritten by the other's dup2; dup2 clears close-on-exec on the new descriptors.
        unsafe {
            command.pre_exec(move || {
                let (reads, writes) =
                    (libc::fcntl(read_fd, libc::F_DUPFD, 10), libc::fcntl(write_fd, libc::F_DUPFD, 10));
                if reads < 0 || writes < 0 || libc::dup2(reads, 3) < 0 || libc::dup2(writes, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium runs (scripts/setup installs it)");
        drop((chromium_reads, chromium_writes));
        let mut browser =
            Browser { child, to, from: std::io::BufReader::new(from), next_id: 0, session: String::new(), profile };
        let target = browser.call("Target.createTarget", serde_json::json!({ "url": "about:blank" }), None);
        let attached = browser.call(
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target["targetId"], "flatten": true }),
            None,
        );
        browser.session = attached["sessionId"].as_str().expect("a session").to_owned();
        browser.call("Page.enable", serde_json::json!({}), None);
        browser.call("Page.navigate", serde_json::json!({ "url": url }), Some("Page.loadEventFired"));
        browser
    }

    /// Evaluates `expression` in the page (awaiting it when it is a promise); its value.
    pub fn eval(&mut self, expression: &str) -> serde_json::Value {
        let result = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            None,
        );
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` every 200 ms until it is true, for up to `limit`; whether it
    /// became true.
    pub fn wait_until(&mut self, expression: &str, limit: std::time::Duration) -> bool {
        let waited = std::time::Instant::now();
        while waited.elapsed() < limit {
            if self.eval(expression) == serde_json::json!(true) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        false
    }

    /// A PNG of the page as it is now, written to `png`; its size in bytes.
    pub fn screenshot(&mut self, png: &Path) -> usize {
        use base64::Engine;

        let shot = self.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }), None);
        let data = shot["data"].as_str().expect("the screenshot's data");
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
        std::fs::write(png, &bytes).expect("write the screenshot");
        bytes.len()
    }

    /// Sends one command (to the page's session once there is one) and reads until its
    /// answer and, if given, the event `wait_for` (which may come first).
    fn call(&mut self, method: &str, params: serde_json::Value, wait_for: Option<&str>) -> serde_json::Value {
        use std::io::{BufRead, Write};

        self.next_id += 1;
        let mut message = serde_json::json!({ "id": self.next_id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = serde_json::json!(self.session);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let (mut answer, mut event) = (None, wait_for.is_none());
        while answer.is_none() || !event {
            let mut raw = Vec::new();
            let n = self.from.read_until(0, &mut raw).expect("read from chromium");
            assert!(n > 0, "chromium closed the pipe");
            raw.pop();
            let reply: serde_json::Value = serde_json::from_slice(&raw).expect("a JSON message");
            if reply["id"] == serde_json::json!(self.next_id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                answer = Some(reply["result"].clone());
            } else if wait_for.is_some_and(|w| reply["method"] == serde_json::json!(w)) {
                event = true;
            }
        }
        answer.expect("an answer")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
