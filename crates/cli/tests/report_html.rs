//! `ferry report --format html` of a real lab run, opened in headless Chromium: the DOM
//! Chromium built has one lane per host, one bar per attempt on its source's lane and one
//! on its target's, and one table row per VM matching the journal, failures first; the
//! page's script ran without errors; hovering a bar shows its attempt's figures, a header
//! sorts the table (both through the DevTools protocol); a screenshot renders.

mod common;
#[path = "common/dom.rs"]
mod dom;

use std::collections::HashMap;
use std::path::Path;

use common::TestLab;
use ferry_journal::{Journal, JournalConfig};
use ferry_model::Status;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn the_html_report_of_a_lab_run_shows_every_host_attempt_and_vm() {
    let lab = TestLab::up("report-html", 5_000, &["--hosts", "3", "--vms", "4", "--mem", "128"]);
    let state = lab.dir.join("journal.db");
    let cluster = lab.dir.join("cluster.toml");
    // vm-1 (host-a, host-local disk) cannot move to host-b: a volume of its name is there
    // already, and ferry never overwrites one. The check is waived so that it fails for
    // real, as an attempt.
    lab.virsh("host-b", &["vol-create-as", "local", "vm-1.qcow2", "16M", "--format", "qcow2"]);
    let plan = lab.dir.join("night.toml");
    std::fs::write(
        &plan,
        "[plan]\nname = \"night\"\n[limits]\ncluster = 2\n[policy]\ndelete_source_volumes = true\n\
         [[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n[[move]]\nvm = \"vm-2\"\nto = \"host-c\"\n\
         [[move]]\nvm = \"vm-3\"\nto = \"host-a\"\n[[move]]\nvm = \"vm-4\"\nto = \"host-b\"\n",
    )
    .expect("write the plan");
    let out = common::ferry(&[
        "migrate",
        "--cluster",
        path_str(&cluster),
        "--state",
        path_str(&state),
        "--ignore",
        "volumes",
        "--deadline",
        "2099-01-01T00:00:00Z",
        path_str(&plan),
    ]);
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "vm-1 fails: {text}");
    let run = text.lines().find_map(|l| l.strip_prefix("run ")).expect("a run id").trim().to_owned();

    let page = lab.dir.join("report.html");
    let out = common::ferry(&["report", &run, "--format", "html", "-o", path_str(&page), "--state", path_str(&state)]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));

    // What the journal holds.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal = runtime.block_on(Journal::open_path(&state, &JournalConfig::default())).expect("the journal opens");
    let moves = runtime.block_on(journal.moves(&run)).expect("moves");
    let attempts = runtime.block_on(journal.attempts(&run)).expect("attempts");
    assert_eq!(moves.len(), 4);
    let vm1 = moves.iter().find(|m| m.vm == "vm-1").expect("vm-1");
    assert_eq!(vm1.status, Status::FailureInit, "{vm1:?}");
    assert_eq!(attempts.len(), 4, "every move was tried once: {attempts:#?}");

    // What Chromium made of the page.
    let dumped = dom::dump(&page, &lab.dir);
    assert!(dom::script_errors(&dumped.log).is_empty(), "script errors:\n{}", dumped.log);
    let shown = dom::report_page(&dumped.html);
    assert!(shown.ready, "the page's script ran to its end");

    // One lane per host, in the cluster file's order.
    let lanes: Vec<&str> = shown.lanes.iter().map(|(host, _)| host.as_str()).collect();
    assert_eq!(lanes, ["host-a", "host-b", "host-c"]);

    // One bar per attempt on its source's lane and one on its target's, nowhere else.
    let page_attempts = shown.data["a"].as_array().expect("attempts in the data");
    assert_eq!(page_attempts.len(), attempts.len());
    let hosts = shown.data["h"].as_array().expect("hosts in the data");
    let statuses = shown.data["s"].as_array().expect("statuses in the data");
    let vm_of_row: Vec<&str> = shown.rows.iter().map(|r| r[0].as_str()).collect();
    let by_vm: HashMap<&str, &ferry_journal::Move> = moves.iter().map(|m| (m.vm.as_str(), m)).collect();
    let mut bars_seen = 0;
    for (index, a) in page_attempts.iter().enumerate() {
        let vm = vm_of_row[a[0].as_u64().expect("a row") as usize];
        let m = by_vm[vm];
        let number = a[1].as_u64().expect("a number") as u32;
        let journaled = attempts
            .iter()
            .find(|j| j.uuid == m.uuid && j.number == number)
            .unwrap_or_else(|| panic!("{vm} attempt {number} is in the journal"));
        assert_eq!(hosts[a[6].as_u64().expect("a target") as usize], journaled.target.as_str());
        assert_eq!(statuses[a[3].as_u64().expect("an outcome") as usize], journaled.outcome.expect("ended").name());
        for (host, bars) in &shown.lanes {
            let here = bars.iter().filter(|&&b| b == index).count();
            let expected = usize::from(*host == m.source) + usize::from(*host == journaled.target);
            assert_eq!(here, expected, "{vm} attempt {number} on {host}'s lane");
            bars_seen += here;
        }
    }
    let bars: usize = shown.lanes.iter().map(|(_, bars)| bars.len()).sum();
    assert_eq!((bars, bars_seen), (2 * attempts.len(), 2 * attempts.len()));

    // One row per VM, as the journal has it, failures first.
    assert_eq!(shown.header[..5], ["VM", "Status", "Source", "Target", "Start"]);
    assert_eq!(shown.rows.len(), moves.len());
    for row in &shown.rows {
        let m = by_vm[row[0].as_str()];
        assert_eq!(row[1], m.status.name(), "{row:?}");
        assert_eq!(row[2], m.source, "{row:?}");
        assert_eq!(row[3], m.target.clone().unwrap_or_default(), "{row:?}");
        let tried = attempts.iter().filter(|a| a.uuid == m.uuid).count();
        assert_eq!(row[10], tried.to_string(), "{row:?}");
        assert!(row[11].starts_with(&m.message), "{row:?} {}", m.message);
    }
    assert_eq!(shown.rows[0][0], "vm-1", "the failure first");
    assert!(shown.rows[1..].iter().all(|r| r[1] == "SUCCESS"), "{:?}", shown.rows);
    assert_eq!(shown.failures.len(), 1, "{:?}", shown.failures);
    assert!(
        shown.failures[0].contains("vm-1") && shown.failures[0].contains("ferry did not leave it there"),
        "the failure with its reason: {:?}",
        shown.failures
    );

    // Hovering a bar shows its attempt's figures; a header sorts the table.
    let mut browser = dom::Browser::open(&page, &lab.dir);
    let hover = browser.eval(
        "(function () { var bar = document.querySelector('#lanes rect'); \
         bar.dispatchEvent(new MouseEvent('mouseover', { bubbles: true, clientX: 5, clientY: 5 })); \
         var tip = document.getElementById('tip'); \
         return [+bar.getAttribute('data-a'), tip.hidden, tip.textContent]; })()",
    );
    let a = &page_attempts[hover[0].as_u64().expect("an index") as usize];
    let (vm, outcome) =
        (vm_of_row[a[0].as_u64().expect("a row") as usize], &statuses[a[3].as_u64().expect("an outcome") as usize]);
    let tip = hover[2].as_str().expect("the tip's text");
    assert_eq!(hover[1], false, "the tip shows");
    assert!(tip.starts_with(&format!("{vm} \u{b7} attempt {}, live", a[1])), "{tip}");
    assert!(tip.contains(outcome.as_str().expect("a status")) && tip.contains(" UTC ("), "{tip}");
    let sorted = browser.eval(
        "(function () { document.querySelectorAll('#vms th')[0].click(); \
         return Array.prototype.map.call(document.querySelectorAll('#vms tbody tr'), \
         function (r) { return r.cells[0].textContent; }); })()",
    );
    assert_eq!(sorted, serde_json::json!(["vm-1", "vm-2", "vm-3", "vm-4"]));
    drop(browser);

    // And it renders.
    let png = lab.dir.join("report.png");
    dom::screenshot(&page, &png, &lab.dir, 1280, 1000);
    let size = std::fs::metadata(&png).expect("a screenshot").len();
    assert!(size > 20_000, "a screenshot of a page, not of a blank: {size} bytes");

    runtime.block_on(journal.close());
    lab.check_ok();
}

/// The reader the test relies on, on what Chromium writes.
#[test]
fn the_dom_reader_reads_what_chromium_writes() {
    let doc = dom::parse(
        "<!DOCTYPE html><html data-ready=\"\"><head><meta charset=\"utf-8\"><style>a<b{}</style></head>\
         <body><p id=\"x\" class=\"a b\">1 &lt; 2 &amp;&nbsp;3</p><svg><g class=\"lane\" data-host=\"h&quot;1\">\
         <rect x=\"1\" data-a=\"0\"></rect></g></svg><table><tbody><tr><td>vm-1</td><td>x</td></tr></tbody></table>\
         <script>if (a</b) {}</script></body></html>",
    );
    let p = doc.by_id("x").expect("p");
    assert_eq!(p.text(), "1 < 2 &\u{a0}3");
    assert!(p.has_class("b"));
    let lanes = doc.find_all(&|e| e.has_class("lane"));
    assert_eq!(lanes[0].attr("data-host"), Some("h\"1"));
    assert_eq!(lanes[0].children_named("rect").len(), 1);
    let cells = doc.find_all(&|e| e.name == "td");
    assert_eq!(cells.iter().map(|c| c.text()).collect::<Vec<_>>(), ["vm-1", "x"]);
    assert_eq!(doc.find_all(&|e| e.name == "script")[0].text(), "if (a</b) {}");
    assert!(doc.find_all(&|e| e.name == "html")[0].attr("data-ready").is_some());
}
