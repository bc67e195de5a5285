//! `ferry serve` through the binary, on a journal a simulated drain filled (no lab): every
//! endpoint's answers and refusals, the same JSON as the CLI's, roles, the body limit, event
//! streams resumed from `Last-Event-ID`, and token files refused. Then on a lab (port block
//! 4500): a drain started over HTTP, followed through its events and metrics, aborted over
//! HTTP, every guest healthy on its source.

mod common;
#[path = "common/dom.rs"]
mod dom;
#[path = "common/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ferry;
use serde_json::Value;

const OPERATE: &str = "operate-0123456789abcdef";
const READ: &str = "read-fedcba9876543210";

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A running `ferry serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    fn start(state: &Path, tokens: &Path, cluster: &str) -> Server {
        Server::start_with(state, tokens, cluster, &[])
    }

    fn start_with(state: &Path, tokens: &Path, cluster: &str, more: &[&str]) -> Server {
        Server::spawn(path(state), tokens, cluster, more, None)
    }

    /// A server on journal `state`; with `host`, in a UTS namespace of its own named so: a
    /// controller on another machine to the ferries of this one.
    fn spawn(state: &str, tokens: &Path, cluster: &str, more: &[&str], host: Option<&'static str>) -> Server {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file", path(tokens), "--state", state])
            .args(["--cluster", cluster])
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(host) = host {
            // SAFETY: unshare(2) and sethostname(2) are system calls, safe between fork and
            // exec; the closure touches only the static name.
            unsafe {
                command.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWUTS) != 0
                        || libc::sethostname(host.as_ptr().cast(), host.len()) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("ferry serve starts");
        let port = served::listening_port(child.stdout.take().expect("stdout"));
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("log").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Server { child, port, log }
    }

    /// One HTTP/1.1 request: the status and the body.
    fn request(&self, method: &str, target: &str, token: Option<&str>, headers: &[&str], body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for h in headers {
            head.push_str(&format!("{h}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).expect("sends");
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        let body =
            if answer.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(&body) } else { body };
        (status, body)
    }

    fn get(&self, target: &str, token: Option<&str>) -> (u16, String) {
        self.request("GET", target, token, &[], b"")
    }

    /// The response head of a GET, header names in lower case.
    fn head(&self, target: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        let ask = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(ask.as_bytes()).expect("sends");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let head = answer.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .map(|l| match l.split_once(':') {
                Some((name, value)) => format!("{}:{value}\n", name.to_ascii_lowercase()),
                None => format!("{l}\n"),
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A chunked body, joined.
fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A test directory with a journal filled by a simulated drain, a token file and the fleet
/// (as `--cluster`).
/// A journal with one simulated drain, tokens, and the fleet, in a directory of `test`'s own.
fn setup(test: &str) -> (PathBuf, PathBuf, String, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory");
    let fleet = dir.join("fleet.toml");
    let out = ferry(&["sim", "gen", "--hosts", "10", "--vms", "40", "--seed", "5", "-o", path(&fleet)]);
    assert!(out.status.success());
    let state = dir.join("journal.db");
    let out = ferry(&["drain", "h-0001", "--cluster", &format!("sim:{}", path(&fleet)), "--state", path(&state)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let run = common::printed_run_id(&String::from_utf8_lossy(&out.stdout)).expect("a run id");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("# who may do what\noperate {OPERATE}\nread {READ}\n")).expect("tokens");
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    (state, tokens, run, format!("sim:{}", path(&fleet)))
}

#[test]
fn every_endpoint_answers_as_the_cli_does_and_refuses_what_it_must() {
    let (state, tokens, run, cluster) = setup("endpoints");
    let server = Server::start(&state, &tokens, &cluster);

    // Runs and a report: the CLI's very JSON.
    let (code, body) = server.get("/api/runs", Some(READ));
    assert_eq!(code, 200, "{body}");
    let cli = ferry(&["runs", "--state", path(&state), "--output", "json"]);
    assert_eq!(json(&body), json(&String::from_utf8_lossy(&cli.stdout)));
    let (code, body) = server.get(&format!("/api/runs/{run}"), Some(READ));
    assert_eq!(code, 200, "{body}");
    let cli = ferry(&["report", &run, "--state", path(&state), "--format", "json"]);
    let (mut api, mut cli) = (json(&body), json(&String::from_utf8_lossy(&cli.stdout)));
    for report in [&mut api, &mut cli] {
        report.as_object_mut().expect("an object").remove("generated_ms");
    }
    assert_eq!(api, cli, "the report over HTTP is `ferry report --format json`");

    // An unknown run: 404 in the CLI's words; an unknown route: 404.
    let (code, body) = server.get(&format!("/api/runs/{}x", &run[..run.len() - 1]), Some(READ));
    assert_eq!(code, 404, "{body}");
    assert!(json(&body)["error"].as_str().is_some_and(|e| e.contains(&format!("did you mean {run}?"))), "{body}");
    assert_eq!(server.get("/api/nothing", Some(READ)).0, 404);

    // No token, an unknown one: 401; a read token asking to abort: 403.
    assert_eq!(server.get("/api/runs", None).0, 401);
    assert_eq!(server.get("/api/runs", Some("not-a-token-at-all")).0, 401);
    let abort = format!("/api/runs/{run}/abort");
    let (code, body) = server.request("POST", &abort, Some(READ), &[], b"");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("needs the operate role"), "{body}");
    // A body over the limit: 413, nothing done.
    let big = vec![b'x'; 2 << 20];
    assert_eq!(server.request("POST", &abort, Some(OPERATE), &["Content-Type: text/plain"], &big).0, 413);
    // An operator's abort of a run that ended: said so, the run unchanged.
    let (code, body) = server.request("POST", &abort, Some(OPERATE), &[], b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["outcome"], "already finished", "{body}");

    // A resume of a run that ended, as `ferry resume` answers it; a simulated fleet's plan
    // is not started over HTTP.
    let (code, body) = server.request("POST", &format!("/api/runs/{run}/resume"), Some(OPERATE), &[], b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["all_succeeded"], true, "{body}");
    assert_eq!(ferry(&["resume", &run, "--state", path(&state)]).status.code(), Some(0), "the CLI says the same");
    assert_eq!(server.request("POST", &format!("/api/runs/{run}/resume"), Some(READ), &[], b"").0, 403);
    let (code, body) = server.request("POST", "/api/runs", Some(OPERATE), &[], b"[[drain]]\nhost = \"h-0002\"\n");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("virtual time"), "{body}");

    // Events as server-sent events, each with its journal id, resumed after Last-Event-ID.
    let (code, all) = server.get(&format!("/api/runs/{run}/events"), Some(READ));
    assert_eq!(code, 200, "{all}");
    let ids = |text: &str| -> Vec<i64> { text.lines().filter_map(|l| l.strip_prefix("id: ")?.parse().ok()).collect() };
    let every = ids(&all);
    assert!(every.len() > 10, "{all}");
    assert!(every.windows(2).all(|w| w[0] < w[1]), "in order: {every:?}");
    let from = every[5];
    let (_, rest) = server.request(
        "GET",
        &format!("/api/runs/{run}/events"),
        Some(READ),
        &[&format!("Last-Event-ID: {from}")],
        b"",
    );
    assert_eq!(ids(&rest), every[6..], "resumed after {from}");

    // Metrics: the drain's moves, counted.
    let (code, metrics) = server.get("/metrics", Some(READ));
    assert_eq!(code, 200, "{metrics}");
    let report = json(&server.get(&format!("/api/runs/{run}"), Some(READ)).1);
    let moves = report["moves"].as_array().expect("moves").len();
    assert!(metrics.contains(&format!("ferry_migrations_total{{status=\"SUCCESS\"}} {moves}\n")), "{metrics}");
    assert!(metrics.contains(&format!("ferry_migration_downtime_seconds_count {moves}\n")), "{metrics}");

    // A preview of a plan sent in the body: `ferry preview`'s JSON; a bad plan gets the CLI's
    // message, its body named as the file, and starts nothing.
    let vm = report["moves"][0]["vm"].as_str().expect("a VM").to_owned();
    let plan = format!("[[move]]\nvm = \"{vm}\"\nto = \"ANY\"\n");
    let (code, body) = server.request("POST", "/api/preview", Some(READ), &[], plan.as_bytes());
    assert_eq!(code, 200, "{body}");
    let preview = json(&body);
    assert_eq!(preview["moves"], 1, "{body}");
    assert_eq!(preview["vms"][0]["vm"], vm.as_str(), "{body}");
    let csv = format!("vm,to\n{vm},ANY\n");
    let (code, body) = server.request("POST", "/api/preview", Some(READ), &["Content-Type: text/csv"], csv.as_bytes());
    assert_eq!((code, json(&body)["moves"].clone()), (200, Value::from(1)), "{body}");
    let runs_before = json(&server.get("/api/runs", Some(READ)).1);
    for (bad, says) in [
        ("[[move]]\nvm = \"vm-nope\"\nto = \"ANY\"\n", "request body:2: vm: no VM vm-nope on any host"),
        ("[[move]]\nvm = \"x\"\nto = 3\n", "request body:3:"),
    ] {
        let (code, body) = server.request("POST", "/api/preview", Some(READ), &[], bad.as_bytes());
        assert_eq!(code, 400, "{body}");
        assert!(json(&body)["error"].as_str().is_some_and(|e| e.contains(says)), "{says}: {body}");
    }
    assert_eq!(json(&server.get("/api/runs", Some(READ)).1), runs_before, "nothing started");
    assert_eq!(server.request("POST", "/api/preview", None, &[], plan.as_bytes()).0, 401);

    // The web view: its page needs no token (it holds no data) and may reach nothing but
    // this server; its script learns the token's role and fetches the report as HTML.
    for page in ["/".to_owned(), format!("/runs/{run}")] {
        let (code, body) = server.get(&page, None);
        assert_eq!(code, 200, "{page}");
        assert!(body.starts_with("<!doctype html>") && body.contains("/api/runs/"), "{page}: {body}");
    }
    let head = server.head("/");
    assert!(head.contains("content-security-policy: default-src 'none'"), "{head}");
    assert_eq!(json(&server.get("/api/whoami", Some(READ)).1)["role"], "read");
    assert_eq!(json(&server.get("/api/whoami", Some(OPERATE)).1)["role"], "operate");
    assert_eq!(server.get("/api/whoami", None).0, 401);
    let (code, html) = server.get(&format!("/api/runs/{run}/html"), Some(READ));
    assert_eq!(code, 200);
    let cli = ferry(&["report", &run, "--state", path(&state), "--format", "html"]);
    let title = |page: &str| page.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).map(str::to_owned);
    assert_eq!(title(&html), title(&String::from_utf8_lossy(&cli.stdout)), "the CLI's HTML report");
    assert!(html.contains(&format!("<section id=\"moves\"><h2>VMs <span class=\"count\">{moves}</span>")));
    assert_eq!(server.get(&format!("/api/runs/{run}/html"), None).0, 401);

    // The inventory: `ferry inventory --output json`.
    let (code, body) = server.get("/api/inventory", Some(READ));
    assert_eq!(code, 200, "{body}");
    let cli = ferry(&["inventory", "--cluster", &cluster, "--output", "json"]);
    assert_eq!(json(&body), json(&String::from_utf8_lossy(&cli.stdout)));

    // Each request was logged with its role.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log.lock().expect("log").clone();
    for line in [
        format!("role=\"operate\" method=POST path=/api/runs/{run}/abort status=200"),
        format!("role=\"read\" method=POST path=/api/runs/{run}/abort status=403"),
        format!("role=\"operate\" method=POST path=/api/runs/{run}/abort status=413"),
        "role=\"none\" method=GET path=/api/runs status=401".to_owned(),
    ] {
        assert!(log.contains(&line), "{line} not in:\n{log}");
    }
}

#[test]
fn https_with_the_certificate_given_and_nothing_in_plain_text() {
    let (state, tokens, run, cluster) = setup("https");
    let dir = state.parent().expect("a directory").to_owned();
    // A certificate for 127.0.0.1 from a CA of the test's own, as an operator's would be.
    let ca_key = rcgen::KeyPair::generate().expect("a key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "ferry test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("a CA");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("a certificate");
    let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&ca_pem, ca_cert.pem()).expect("write");
    std::fs::write(&cert_pem, cert.pem()).expect("write");
    std::fs::write(&key_pem, key.serialize_pem()).expect("write");

    // A key given as the certificate: exit 2, the file named, nothing listening.
    let out = ferry(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        path(&tokens),
        "--state",
        path(&state),
        "--tls-cert",
        path(&key_pem),
        "--tls-key",
        path(&key_pem),
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("key.pem: no certificate in it"), "{said}");

    let server =
        Server::start_with(&state, &tokens, &cluster, &["--tls-cert", path(&cert_pem), "--tls-key", path(&key_pem)]);
    let url = format!("https://127.0.0.1:{}/api/runs/{run}", server.port);
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl runs")
    };
    let out = curl(&["--cacert", path(&ca_pem), "-H", &format!("Authorization: Bearer {READ}"), &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["run"]["id"], run.as_str());
    // Without the CA the certificate is not trusted; plain HTTP gets no answer.
    assert!(!curl(&[&url]).status.success(), "a certificate of an unknown CA was trusted");
    let plain = server.get(&format!("/api/runs/{run}"), Some(READ));
    assert_eq!(plain.0, 0, "plain HTTP answered: {plain:?}");
}

#[test]
fn a_token_file_others_can_read_or_that_holds_no_token_is_refused() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-tokens");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("read {READ}\n")).expect("tokens");
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let out = ferry(&["serve", "--listen", "127.0.0.1:0", "--token-file", path(&tokens)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mode 0644"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&tokens, "# nobody\n").expect("tokens");
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let out = ferry(&["serve", "--listen", "127.0.0.1:0", "--token-file", path(&tokens)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no token in it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A cluster file that cannot be read: exit 2, and no journal made.
    std::fs::write(&tokens, format!("read {READ}\n")).expect("tokens");
    let state = dir.join("journal.db");
    let missing = dir.join("missing.toml");
    let out = ferry(&["serve", "--token-file", path(&tokens), "--state", path(&state), "--cluster", path(&missing)]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("missing.toml"), "{said}");
    assert!(!state.exists(), "no journal made on bad input");
}

#[test]
fn on_the_lab_a_drain_over_http_is_watched_aborted_and_taken_over_by_a_second_server() {
    let lab = common::TestLab::up("serve-lab", 4_500, &["--hosts", "2", "--vms", "3", "--mem", "256", "--dirty", "4"]);
    let vms = ["vm-1", "vm-2", "vm-3"];
    let home: Vec<serde_json::Value> = vms.iter().map(|vm| lab.vm_status(vm)["running_on"].clone()).collect();
    // 16 MiB/s links: each 256 MiB migration takes over 10 s.
    let text = std::fs::read_to_string(lab.dir.join("cluster.toml")).expect("the lab's cluster file");
    let slow: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with("link_mib_s") { "link_mib_s = 16".to_owned() } else { l.to_owned() })
        .collect();
    let cluster = lab.dir.join("cluster-16.toml");
    std::fs::write(&cluster, slow.join("\n")).expect("a cluster file");
    let tokens = lab.dir.join("tokens");
    std::fs::write(&tokens, format!("operate {OPERATE}\nread {READ}\n")).expect("tokens");
    std::fs::set_permissions(&tokens, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    // A new journal: the server creates it.
    let state = lab.dir.join("journal.db");
    let server = Server::start(&state, &tokens, path(&cluster));

    // A read token may not start a run; an operator's drain of host-a starts.
    let drain =
        "[plan]\nname = \"drain host-a\"\n[limits]\ncluster = 2\n[[drain]]\nhost = \"host-a\"\nto = \"host-b\"\n";
    assert_eq!(server.request("POST", "/api/runs", Some(READ), &[], drain.as_bytes()).0, 403);
    // A plan that does not resolve: 400 with the CLI's message, nothing journaled.
    let bad = "[[move]]\nvm = \"vm-9\"\nto = \"host-b\"\n";
    let (code, body) = server.request("POST", "/api/runs", Some(OPERATE), &[], bad.as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("request body:2: vm: no VM vm-9"), "{body}");
    assert_eq!(json(&server.get("/api/runs", Some(READ)).1), serde_json::json!([]), "nothing started");
    let (code, body) = server.request("POST", "/api/runs", Some(OPERATE), &[], drain.as_bytes());
    assert_eq!(code, 201, "{body}");
    let run = json(&body)["run"].as_str().expect("a run id").to_owned();

    // Watched in a browser: the run page, with an operator's token.
    let url = format!("http://127.0.0.1:{}/runs/{run}#token={OPERATE}", server.port);
    let mut browser = dom::Browser::open_url(&url, &lab.dir);
    let migrating =
        "[...document.querySelectorAll('#vms tbody tr')].some(r => r.cells[1].textContent === 'MIGRATING') \
                     && document.querySelectorAll('#flight meter').length > 0";
    assert!(browser.wait_until(migrating, Duration::from_secs(60)), "no migration shown: {}", page_text(&mut browser));
    let first = seen(&mut browser);

    // Scraped while it runs: a migration's remaining bytes fall, the run has an ETA.
    let remaining = |metrics: &str| -> Vec<(String, f64)> { gauges(metrics, "ferry_migration_data_remaining_bytes") };
    // A job's first samples, before QEMU has sized its work, say little or nothing
    // remains; then the figure falls as the pass goes. Scraped each second until one
    // migration's remaining bytes are below the most they were.
    let mut series: std::collections::HashMap<String, Vec<f64>> = std::collections::HashMap::new();
    let falling = |series: &std::collections::HashMap<String, Vec<f64>>| {
        series.values().any(|series| {
            let most = series.iter().copied().fold(0.0, f64::max);
            series.last().is_some_and(|last| most > 0.0 && *last < most)
        })
    };
    let mut metrics = String::new();
    let waited = std::time::Instant::now();
    while !falling(&series) && waited.elapsed() < Duration::from_secs(40) {
        metrics = server.get("/metrics", Some(READ)).1;
        for (labels, left) in remaining(&metrics) {
            series.entry(labels).or_default().push(left);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(falling(&series), "remaining bytes did not fall: {series:?}");
    assert!(metrics.contains("ferry_migrations_in_phase{phase="), "{metrics}");
    assert!(!gauges(&metrics, "ferry_run_eta_seconds").is_empty(), "no ETA: {metrics}");
    for name in ["ferry_migration_data_processed_bytes", "ferry_migration_memory_transfer_rate_bytes"] {
        assert!(!gauges(&metrics, name).is_empty(), "no {name}: {metrics}");
    }

    // The page moved on by itself: a transfer's bar grew, the report was fetched again and
    // its timeline reaches a later now; then a screenshot of it.
    let second = seen(&mut browser);
    assert!(second.refreshes > first.refreshes, "the report was not refreshed: {first:?} then {second:?}");
    // The timeline spans the run so far: its "now" moved on, its running bars with it.
    assert!(!second.bars.is_empty(), "no bar on the timeline");
    assert!(second.now != first.now, "the timeline did not move: {:?}", second.now);
    let rose = second.meters.iter().any(|(vm, v)| first.meters.iter().any(|(m, was)| m == vm && v > was));
    assert!(rose, "no transfer rose: {:?} then {:?}", first.meters, second.meters);
    assert!(second.eta.starts_with("ETA "), "{second:?}");
    // Kept after the test, for a person to look at.
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-run-page.png");
    let size = browser.screenshot(&png);
    assert!(size > 20_000, "a screenshot of a page, not of a blank: {size} bytes");

    // Aborted from the page (its button asks the API): the running migrations are
    // cancelled, the guests stay home.
    browser.eval("document.getElementById('abort').click()");
    assert_eq!(browser.eval("document.getElementById('abort').textContent"), "Confirm: abort run");
    browser.eval("document.getElementById('abort').click()");
    let said = "document.getElementById('said').textContent.includes('aborted by the process driving it')";
    assert!(browser.wait_until(said, Duration::from_secs(90)), "not aborted: {}", page_text(&mut browser));
    let report = json(&server.get(&format!("/api/runs/{run}"), Some(READ)).1);
    let statuses: Vec<&str> =
        report["moves"].as_array().expect("moves").iter().filter_map(|m| m["status"].as_str()).collect();
    assert!(statuses.iter().all(|s| *s == "ABORTED"), "{statuses:?}");
    // The page follows: every row aborted, the stream ended.
    let aborted = "document.body.dataset.ended === 'true' && \
                   [...document.querySelectorAll('#vms tbody tr')].every(r => r.cells[1].textContent === 'ABORTED')";
    assert!(
        browser.wait_until(aborted, Duration::from_secs(30)),
        "the page did not follow: {}",
        page_text(&mut browser)
    );
    drop(browser);
    let (_, events) = server.get(&format!("/api/runs/{run}/events"), Some(READ));
    assert!(events.contains("event: status"), "{events}");
    assert!(events.contains("abort"), "{events}");
    let (_, metrics) = server.get("/metrics", Some(READ));
    assert!(
        metrics.contains(&format!("ferry_migrations_total{{status=\"ABORTED\"}} {}\n", statuses.len())),
        "{metrics}"
    );
    for (vm, home) in vms.iter().zip(&home) {
        let on = lab.vm_status(vm);
        assert_eq!(&on["running_on"], home, "{vm} is home: {on:#}");
    }
    lab.check_ok();
    drop(server);

    // Two servers on one PostgreSQL journal, the second as if on another machine: the
    // first starts a drain and is killed (-9) in its transfers; the second shows the run
    // meanwhile, takes it over once the lease has run out, and finishes it.
    let postgres = ferry_pgtest::Server::start().expect("a PostgreSQL server (scripts/setup installs it)");
    let shared = postgres.url(ferry_pgtest::DATABASE);
    let first = Server::spawn(&shared, &tokens, path(&cluster), &[], None);
    let second = Server::spawn(&shared, &tokens, path(&cluster), &[], Some("ctl-2"));
    let (code, body) = first.request("POST", "/api/runs", Some(OPERATE), &[], drain.as_bytes());
    assert_eq!(code, 201, "{body}");
    let run = json(&body)["run"].as_str().expect("a run id").to_owned();
    let waited = std::time::Instant::now();
    // Killed once its migrations are sending: libvirt carries them on without it.
    let sending = || {
        gauges(&first.get("/metrics", Some(READ)).1, "ferry_migration_data_processed_bytes")
            .iter()
            .any(|(_, b)| *b > 0.0)
    };
    while !sending() {
        assert!(waited.elapsed() < Duration::from_secs(60), "nothing sent");
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut first = first;
    common::kill9(first.child.id());
    let _ = first.child.wait();
    let killed = std::time::Instant::now();
    let listed = json(&second.get("/api/runs", Some(READ)).1);
    let owner =
        listed.as_array().and_then(|runs| runs.iter().find(|r| r["id"] == run.as_str())).map(|r| r["owner"].clone());
    assert!(owner.as_ref().and_then(|o| o.as_str()).is_some_and(|o| !o.starts_with("ctl-2:")), "{listed:#}");
    let report = loop {
        let report = json(&second.get(&format!("/api/runs/{run}"), Some(READ)).1);
        if report["run"]["state"] == "finished" {
            break report;
        }
        let log = second.log.lock().expect("log").clone();
        assert!(killed.elapsed() < Duration::from_secs(180), "not taken over: {report:#}\n{log}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let took_over = killed.elapsed();
    assert!(report["run"]["owner"].as_str().is_some_and(|o| o.starts_with("ctl-2:")), "{report:#}");
    let statuses: Vec<&str> =
        report["moves"].as_array().expect("moves").iter().filter_map(|m| m["status"].as_str()).collect();
    assert!(statuses.iter().all(|s| *s == "SUCCESS"), "{statuses:?}");
    let log = second.log.lock().expect("log").clone();
    assert!(log.contains("taking over a run whose controller is gone"), "{log}");
    // The migrations the killed server started went on in libvirt: adopted, not redone.
    let attempts = report["summary"]["attempts"].as_u64();
    assert_eq!(attempts, Some(statuses.len() as u64), "one attempt a move: {report:#}");
    eprintln!("taken over and finished {:.1} s after the kill", took_over.as_secs_f64());
    for vm in vms {
        assert_eq!(lab.vm_status(vm)["running_on"], serde_json::json!(["host-b"]), "{vm}");
    }
    // A move keeps the disk it copied from on its source (rollback's way home).
    let kept: Vec<(String, String)> = report["moves"]
        .as_array()
        .expect("moves")
        .iter()
        .map(|m| {
            (
                m["source"].as_str().unwrap_or_default().to_owned(),
                format!("{}.qcow2", m["vm"].as_str().unwrap_or_default()),
            )
        })
        .collect();
    lab.assert_each_vm_once_and_no_stray_volume(&kept, &|| report.to_string());
    lab.check_ok();
    drop((second, postgres));
}

/// What the run page shows at one moment.
#[derive(Debug)]
struct Seen {
    /// How many times it fetched the report.
    refreshes: u64,
    /// Each timeline bar (its attempt) and its width.
    bars: Vec<(String, f64)>,
    /// Each migration in flight and the bytes its meter shows sent.
    meters: Vec<(String, f64)>,
    /// The ETA line.
    eta: String,
    /// The timeline's "now" label.
    now: String,
}

fn seen(browser: &mut dom::Browser) -> Seen {
    let value = browser.eval(
        "({refreshes: Number(document.body.dataset.refreshes || 0),
           bars: [...document.querySelectorAll('.lanes rect')].map(r => [r.getAttribute('data-a') + '@' + (r.closest('[data-host]') || r).getAttribute('data-host'), Number(r.getAttribute('width'))]),
           meters: [...document.querySelectorAll('#flight meter')].map(m => [m.previousSibling.previousSibling.textContent, m.value]),
           eta: document.getElementById('eta').textContent,
           now: (document.querySelector('.axis .now') || {textContent: ''}).textContent})",
    );
    let pairs = |key: &str| -> Vec<(String, f64)> {
        value[key]
            .as_array()
            .expect("pairs")
            .iter()
            .map(|p| (p[0].as_str().unwrap_or_default().to_owned(), p[1].as_f64().unwrap_or(0.0)))
            .collect()
    };
    Seen {
        refreshes: value["refreshes"].as_u64().unwrap_or(0),
        bars: pairs("bars"),
        meters: pairs("meters"),
        eta: value["eta"].as_str().unwrap_or_default().to_owned(),
        now: value["now"].as_str().unwrap_or_default().to_owned(),
    }
}

fn page_text(browser: &mut dom::Browser) -> String {
    browser.eval("document.body.innerText").as_str().unwrap_or_default().to_owned()
}

/// Each sample of gauge `name` in Prometheus text: its labels and value.
fn gauges(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter(|rest| rest.starts_with('{'))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}
