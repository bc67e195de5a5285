//! `ferry preview`: bad input is refused before anything is contacted, and on a real lab
//! the preview tells an impossible move from a fine one and changes nothing.

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use common::{ferry, TestLab};
use serde_json::{json, Value};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name)
}

fn preview_offline(plan: &str, cluster: &str) -> (Option<i32>, String, String) {
    let plan = corpus(plan);
    let cluster = corpus(cluster);
    let inventory = corpus("inventory.json");
    let out = ferry(&[
        "preview",
        plan.to_str().expect("utf-8"),
        "--cluster",
        cluster.to_str().expect("utf-8"),
        "--inventory",
        inventory.to_str().expect("utf-8"),
    ]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_bad_plan_or_cluster_exits_2_naming_file_and_line_and_contacts_nothing() {
    // The corpus cluster's hosts point at this listener: any contact would show here.
    let listener = TcpListener::bind(("127.0.0.1", 19_999)).expect("bind the sentinel port");
    listener.set_nonblocking(true).expect("nonblocking");
    let cases: &[(&str, &str, &[&str])] = &[
        ("syntax.toml", "cluster.toml", &["syntax.toml:3:"]),
        ("unknown-vm.toml", "cluster.toml", &["unknown-vm.toml:2: vm: no VM web-9 on any host; did you mean web-1?"]),
        (
            "duplicate-move.toml",
            "cluster.toml",
            &["duplicate-move.toml:6: move.vm: web-1 is already planned in a move on line 2"],
        ),
        (
            "two-groups.toml",
            "cluster.toml",
            &["two-groups.toml:6: group.vms: web-1 is already planned in group group-1 (line 2)"],
        ),
        (
            "move-and-group.toml",
            "cluster.toml",
            &["move-and-group.toml:6: group.vms: web-1 is already planned in a move on line 2"],
        ),
        ("unknown-host.toml", "cluster.toml", &["unknown-host.toml:2: to: no host host-x in the cluster"]),
        (
            "typo-host.toml",
            "cluster.toml",
            &["typo-host.toml:2: to: no host hots-b in the cluster; did you mean host-b?"],
        ),
        (
            "negative-limit.toml",
            "cluster.toml",
            &["negative-limit.toml:2: limits.per_source: -1 must be a positive number"],
        ),
        ("zero-limit.toml", "cluster.toml", &["zero-limit.toml:2: limits.cluster: 0 must be a positive number"]),
        ("bad-deadline.toml", "cluster.toml", &["bad-deadline.toml:2: plan.deadline: \"tomorrow\" is not a date-time"]),
        (
            "deadline-no-zone.toml",
            "cluster.toml",
            &["deadline-no-zone.toml:2: plan.deadline: \"2026-11-23T06:00:00\" has no time zone"],
        ),
        ("wrong-type.toml", "cluster.toml", &["wrong-type.toml:2:"]),
        ("unknown-field.toml", "cluster.toml", &["unknown-field.toml:4:", "colour"]),
        ("unknown-table.toml", "cluster.toml", &["unknown-table.toml:1:", "plans"]),
        (
            "bad-mode.toml",
            "cluster.toml",
            &["bad-mode.toml:2: policy.mode: \"warp\" is not one of live, cold, live-or-cold"],
        ),
        ("bad-placement.toml", "cluster.toml", &["bad-placement.toml:2: policy.placement: \"random\" is not one of"]),
        (
            "bad-stale-copies.toml",
            "cluster.toml",
            &["bad-stale-copies.toml:2: policy.stale_copies: \"overwrite\" is not one of refuse, replace"],
        ),
        ("empty-group.toml", "cluster.toml", &["empty-group.toml:3: group[0].vms: an empty group"]),
        ("drain-unknown.toml", "cluster.toml", &["drain-unknown.toml:2: drain.host: no host host-z in the cluster"]),
        ("drain-self.toml", "cluster.toml", &["drain-self.toml:3: drain[0].to: cannot drain host-a onto itself"]),
        ("zero-downtime.toml", "cluster.toml", &["zero-downtime.toml:2: policy.max_downtime_ms: 0 must be at least 1"]),
        ("nothing.toml", "cluster.toml", &["nothing.toml: nothing to do"]),
        ("missing-to.toml", "cluster.toml", &["missing-to.toml:1:", "to"]),
        ("empty-vm.toml", "cluster.toml", &["empty-vm.toml:2: move[0].vm: must name a VM"]),
        (
            "duplicate-drain.toml",
            "cluster.toml",
            &["duplicate-drain.toml:5: drain[1].host: host-a is already drained on line 2"],
        ),
        ("empty-resume.toml", "cluster.toml", &["empty-resume.toml:2: plan.resume_from: must name a run id"]),
        (
            "bad-hook-policy.toml",
            "cluster.toml",
            &["bad-hook-policy.toml:2: hooks.on_failure: \"ignore\" is not one of fail, warn"],
        ),
        ("empty-hook.toml", "cluster.toml", &["empty-hook.toml:4: move[0].post_hook: an empty command"]),
        (
            "many-errors.toml",
            "cluster.toml",
            &["many-errors.toml:2: limits.cluster", "many-errors.toml:3: limits.per_source"],
        ),
        ("csv-no-to.csv", "cluster.toml", &["csv-no-to.csv:1: the header must name the columns vm and to"]),
        ("csv-quote.csv", "cluster.toml", &["csv-quote.csv:2:", "unclosed quote"]),
        ("csv-fields.csv", "cluster.toml", &["csv-fields.csv:2: 5 fields where the header has 4"]),
        ("csv-order.csv", "cluster.toml", &["csv-order.csv:2: order: \"first\" is not a whole number"]),
        ("csv-duplicate.csv", "cluster.toml", &["csv-duplicate.csv:4: vm: web-1 is already planned on line 2"]),
        ("csv-column.csv", "cluster.toml", &["csv-column.csv:1: colour: unknown column"]),
        ("csv-empty.csv", "cluster.toml", &["csv-empty.csv:"]),
        (
            "csv-unknown-vm.csv",
            "cluster.toml",
            &["csv-unknown-vm.csv:3: vm: no VM wbe-2 on any host; did you mean web-2?"],
        ),
        (
            "good.toml",
            "cluster-dup.toml",
            &["cluster-dup.toml:6: host[1].name: \"host-a\" is already the name of host[0]"],
        ),
        ("good.toml", "cluster-link.toml", &["cluster-link.toml:4: host[0].link_mib_s: 0 must be a positive"]),
        ("good.toml", "cluster-uri.toml", &["cluster-uri.toml:3: host[0].uri: \"host-a\" is not a libvirt URI"]),
    ];
    assert!(cases.len() >= 25);
    for (plan, cluster, expect) in cases {
        let (code, stdout, stderr) = preview_offline(plan, cluster);
        assert_eq!(code, Some(2), "{plan} with {cluster}: exit {code:?}\n{stdout}{stderr}");
        assert!(stdout.is_empty(), "{plan}: nothing is previewed on bad input: {stdout}");
        for e in *expect {
            assert!(stderr.contains(e), "{plan} with {cluster}: expected {e:?} in:\n{stderr}");
        }
    }
    // Unknown and duplicate names are all reported, not just the first.
    let (_, _, stderr) = preview_offline("many-errors.toml", "cluster.toml");
    assert_eq!(stderr.lines().count(), 2, "{stderr}");

    // The good plan previews (offline too) and still contacts nothing.
    let (code, stdout, stderr) = preview_offline("good.toml", "cluster.toml");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("web-1  host-a -> host-b (live, plan line 6)  PASSED"), "{stdout}");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("a host was contacted: {other:?}"),
    }
    drop(listener);

    // `ferry migrate` reads the same files the same way: the same errors, exit 2, no run
    // started, not even a journal created. (It asks the hosts for their VMs to check names;
    // with the sentinel closed they are unreachable.)
    let state = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("corpus-journal.db");
    let _ = std::fs::remove_file(&state);
    for (plan, cluster, expect) in cases {
        let out = ferry(&[
            "migrate",
            corpus(plan).to_str().expect("utf-8"),
            "--cluster",
            corpus(cluster).to_str().expect("utf-8"),
            "--state",
            state.to_str().expect("utf-8"),
        ]);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "migrate {plan} with {cluster}:\n{stdout}{stderr}");
        assert!(stdout.is_empty(), "migrate {plan}: no run id on bad input: {stdout}");
        for e in *expect {
            // The hosts are unreachable here, so a VM name gets no suggestion.
            let e = e.split(" on any host").next().unwrap_or(e);
            assert!(stderr.contains(e), "migrate {plan} with {cluster}: expected {e:?} in:\n{stderr}");
        }
    }
    assert!(!state.exists(), "no journal was created");
}

/// A host's `one_stream_mib_s` bounds the estimate of each live move leaving it, and the
/// estimate says so; a host without one leaves the link share.
#[test]
fn a_host_that_says_what_one_stream_moves_bounds_the_estimates_leaving_it() {
    let estimates = |cluster: &str| -> Value {
        let out = ferry(&[
            "preview",
            corpus("good.toml").to_str().expect("utf-8"),
            "--cluster",
            corpus(cluster).to_str().expect("utf-8"),
            "--inventory",
            corpus("inventory.json").to_str().expect("utf-8"),
            "--output",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let preview: Value = serde_json::from_slice(&out.stdout).expect("preview prints JSON");
        let vms = preview["vms"].as_array().expect("vms").clone();
        vms.into_iter().find(|v| v["vm"] == "web-1").expect("web-1 previewed")["estimate"].clone()
    };
    let bounded = estimates("cluster-one-stream.toml");
    assert_eq!(bounded["bandwidth_mib_s"], json!(40.0), "{bounded:#}");
    let note = bounded["note"].as_str().expect("a note");
    assert!(note.contains("what one stream moves from host-a (its one_stream_mib_s)"), "{note}");
    let free = estimates("cluster.toml");
    assert!(free["bandwidth_mib_s"].as_f64().expect("bandwidth") > 40.0, "{free:#}");
    assert!(bounded["transfer_s"].as_f64() > free["transfer_s"].as_f64(), "{bounded:#} {free:#}");
}

#[test]
fn preview_on_the_lab_shows_the_impossible_move_and_changes_nothing() {
    let lab = TestLab::up("preview", 18_000, &["--hosts", "3", "--vms", "3", "--dirty", "8"]);
    // host-c keeps 99 % of its memory back: vm-2's 128 MiB cannot fit there.
    let cluster = std::fs::read_to_string(lab.dir.join("cluster.toml")).expect("cluster file");
    let tight = cluster.replacen("name = \"host-c\"", "name = \"host-c\"\nmemory_overcommit = 0.01", 1);
    let cluster_path = lab.dir.join("tight.toml");
    std::fs::write(&cluster_path, tight).expect("write cluster");
    let plan = lab.dir.join("plan.toml");
    std::fs::write(&plan, "[[move]]\nvm = \"vm-1\"\nto = \"host-b\"\n\n[[move]]\nvm = \"vm-2\"\nto = \"host-c\"\n")
        .expect("write plan");

    let snapshot = || {
        let xml: Vec<String> = ["host-a", "host-b", "host-c"]
            .iter()
            .map(|h| {
                let names = lab.virsh(h, &["list", "--all", "--name"]);
                names.split_whitespace().map(|vm| lab.virsh(h, &["dumpxml", vm])).collect::<Vec<_>>().join("\n")
            })
            .collect();
        let status = lab.status_json();
        let placement: Vec<(Value, Value, Value)> = status["vms"]
            .as_array()
            .expect("vms")
            .iter()
            .map(|v| (v["name"].clone(), v["running_on"].clone(), v["defined_on"].clone()))
            .collect();
        (xml, placement, lab.pool_files("host-a"), lab.pool_files("host-b"), lab.pool_files("host-c"))
    };
    let before = snapshot();
    let out = ferry(&[
        "preview",
        plan.to_str().expect("utf-8"),
        "--cluster",
        cluster_path.to_str().expect("utf-8"),
        "--measure",
        "--measure-seconds",
        "2",
        "--output",
        "json",
    ]);
    let preview: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "{preview:#}");
    assert_eq!(snapshot(), before, "preview changed something");

    let vm = |name: &str| preview["vms"].as_array().expect("vms").iter().find(|v| v["vm"] == name).expect("vm").clone();
    let (fine, impossible) = (vm("vm-1"), vm("vm-2"));
    assert_eq!(fine["verdict"], json!("PASSED"), "{fine:#}");
    assert_eq!(impossible["verdict"], json!("FAILED"), "{impossible:#}");
    let failed: Vec<&Value> =
        impossible["checks"].as_array().expect("checks").iter().filter(|c| c["outcome"] == "FAILED").collect();
    assert_eq!(failed.len(), 1, "only memory fails: {impossible:#}");
    assert_eq!(failed[0]["name"], json!("memory"));
    assert!(
        failed[0]["message"].as_str().is_some_and(|m| m.contains("not enough memory for vm-2: needs 128 MiB")),
        "{failed:?}"
    );
    // The estimate uses the dirty rate measured through libvirt.
    let estimate = &fine["estimate"];
    assert_eq!(estimate["dirty_measured"], json!(true), "{estimate:#}");
    assert!(estimate["dirty_mib_s"].as_f64().is_some_and(|d| d > 0.0), "{estimate:#}");
    assert!(estimate["downtime_ms"].as_f64().is_some_and(|d| d > 0.0 && d < 1000.0), "{estimate:#}");
    assert_eq!(preview["failing"], json!(1));
    lab.check_ok();
}
