//! Migration streams: parallel connections (QEMU multifd) with compression, asked with
//! `ferry move --parallel N --compression NAME`, checked before anything starts. Needs root
//! and the packages `scripts/setup` installs.

mod common;

use common::TestLab;
use ferry_journal::{Attempt, EventKind, Journal, JournalConfig};
use serde_json::json;

fn host_of(lab: &TestLab, vm: &str) -> String {
    lab.vm_status(vm)["running_on"][0].as_str().expect("runs somewhere").to_string()
}

#[test]
fn zstd_over_parallel_connections_sends_fewer_bytes_and_the_guest_survives() {
    // Port block shared with memory_mix.rs: test binaries run one after another.
    let lab = TestLab::up("stream", 4_000, &["--hosts", "2", "--vms", "2", "--mem", "256"]);
    lab.check_ok();
    let other = |host: &str| if host == "host-a" { "host-b" } else { "host-a" }.to_string();

    // vm-2's disk is on shared storage: only its memory crosses, in both moves.
    let state = lab.dir.join("journal.db");
    let state_arg = ["--state", state.to_str().expect("utf-8")];
    let cluster = lab.dir.join("cluster.toml");
    let from = host_of(&lab, "vm-2");
    let (code, plain) = lab.ferry_move_with(&cluster, &state_arg, &["vm-2", "--to", &other(&from)]);
    assert_eq!((code, &plain["status"]), (Some(0), &json!("SUCCESS")), "{plain:#}");
    let (code, zstd) =
        lab.ferry_move_with(&cluster, &state_arg, &["vm-2", "--to", &from, "--parallel", "4", "--compression", "zstd"]);
    assert_eq!((code, &zstd["status"]), (Some(0), &json!("SUCCESS")), "{zstd:#}");
    let bytes = |summary: &serde_json::Value| summary["transferred_bytes"].as_u64().expect("bytes sent");
    let ratio = bytes(&zstd) as f64 / bytes(&plain) as f64;
    eprintln!("plain {} B, zstd over 4 connections {} B: {ratio:.2}", bytes(&plain), bytes(&zstd));
    // The default memory mix compresses to about half (its text pages ~3.4x, zero pages free).
    assert!(ratio < 0.7, "zstd sent {ratio:.2} of the plain move's bytes");
    assert_eq!(host_of(&lab, "vm-2"), from);
    lab.check_ok();

    // The journal keeps how vm-2's memory compressed; the plain move is no observation.
    let uuid = lab.vm_status("vm-2")["uuid"].as_str().expect("uuid").to_string();
    let seen = last_compressed(&state, &uuid).expect("the zstd move's attempt");
    let learnt = seen.memory_per_byte_sent().expect("memory figures journaled");
    eprintln!("journaled: {:?} B of memory in {:?} B: {learnt:.2}:1", seen.memory_bytes, seen.memory_sent_bytes);
    assert!(learnt > 1.4, "zstd carried {learnt:.2} B of memory per byte sent");
    assert!(seen.memory_sent_bytes <= Some(bytes(&zstd)), "{seen:?}");

    // The next preview of a zstd move expects that ratio, and says where it comes from.
    let plan = lab.dir.join("back.toml");
    let text = format!(
        "[plan]\nname = \"back\"\n[policy]\nparallel_connections = 4\ncompression = \"zstd\"\n\
         [[move]]\nvm = \"vm-2\"\nto = \"{}\"\n",
        other(&from)
    );
    std::fs::write(&plan, text).expect("write plan");
    let mut args = vec!["preview", plan.to_str().expect("utf-8"), "--cluster", cluster.to_str().expect("utf-8")];
    args.extend(state_arg);
    args.extend(["--output", "json"]);
    let out = common::ferry(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let preview: serde_json::Value = serde_json::from_slice(&out.stdout).expect("preview json");
    let estimate = &preview["vms"][0]["estimate"];
    let expected = estimate["memory_per_byte_sent"].as_f64().expect("a ratio");
    assert!((expected - learnt).abs() < 1e-9, "{estimate:#}");
    assert!(estimate["note"].as_str().expect("note").contains(&seen.run), "{estimate:#}");
    assert_eq!(host_of(&lab, "vm-2"), from, "preview moved nothing");

    // transport = "auto" on 32 MiB/s links: compressed when the source has a core idle (it
    // measures it), plain and saying why when it has not; whichever, the journal's attempt
    // carries the stream the decision names.
    let linked = lab.dir.join("linked.toml");
    let text = std::fs::read_to_string(&cluster).expect("cluster file");
    let links_of_32 = |line: &str| if line.starts_with("link_mib_s = ") { "link_mib_s = 32" } else { line }.to_string();
    let text: Vec<String> = text.lines().map(links_of_32).collect();
    std::fs::write(&linked, text.join("\n")).expect("write cluster");
    let (attempt, decision) = migrate_auto(&lab, &linked, &state, "auto", &other(&from));
    eprintln!("{decision}");
    assert!(decision.contains("cores idle"), "the source's idle CPU was measured: {decision}");
    let compressed = decision.contains("4 connections with zstd: its link share 32 MiB/s is below");
    assert_eq!(attempt.compression.is_some(), compressed, "{decision}\n{attempt:?}");
    assert!(compressed || decision.contains("compressing its link share takes"), "{decision}");
    assert_eq!(host_of(&lab, "vm-2"), other(&from));
    lab.check_ok();

    // A host whose one stream is slower than the link share keeps one plain stream.
    let slow = lab.dir.join("slow-stream.toml");
    let text = std::fs::read_to_string(&linked).expect("cluster file");
    let one_stream_of_16 =
        |line: &str| if line.starts_with("one_stream_mib_s = ") { "one_stream_mib_s = 16" } else { line }.to_string();
    std::fs::write(&slow, text.lines().map(one_stream_of_16).collect::<Vec<_>>().join("\n")).expect("write cluster");
    let (attempt, decision) = migrate_auto(&lab, &slow, &state, "auto-slow", &from);
    assert!(
        decision.contains("one plain stream: its link share 32 MiB/s is not below what one stream moves, 16 MiB/s"),
        "{decision}"
    );
    assert_eq!(attempt.compression, None);
    assert_eq!(host_of(&lab, "vm-2"), from);
    lab.check_ok();

    // Compression without multifd is refused before anything starts.
    let out = common::ferry(&[
        "move",
        "vm-2",
        "--to",
        &other(&from),
        "--compression",
        "zstd",
        "--cluster",
        lab.dir.join("cluster.toml").to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("compression zstd needs parallel_connections"));
    assert_eq!(host_of(&lab, "vm-2"), from, "nothing moved");
    lab.check_ok();
}

fn last_compressed(state: &std::path::Path, uuid: &str) -> Option<Attempt> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal = rt.block_on(Journal::open_path(state, &JournalConfig::default())).expect("journal opens");
    rt.block_on(journal.last_compressed_attempt(uuid)).expect("journal answers")
}

/// Runs a plan moving vm-2 to `to` under `transport = "auto"`; returns its attempt and the
/// journaled decision.
fn migrate_auto(
    lab: &TestLab,
    cluster: &std::path::Path,
    state: &std::path::Path,
    name: &str,
    to: &str,
) -> (Attempt, String) {
    let plan = lab.dir.join(format!("{name}.toml"));
    let text =
        format!("[plan]\nname = \"{name}\"\n[policy]\ntransport = \"auto\"\n[[move]]\nvm = \"vm-2\"\nto = \"{to}\"\n");
    std::fs::write(&plan, text).expect("write plan");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let out = common::ferry(&["migrate", &path(&plan), "--cluster", &path(cluster), "--state", &path(state)]);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal = rt.block_on(Journal::open_path(state, &JournalConfig::default())).expect("journal opens");
    let run = rt.block_on(journal.latest_run()).expect("journal answers").expect("a run");
    let attempts = rt.block_on(journal.attempts(&run.id)).expect("attempts");
    let events = rt.block_on(journal.events(&run.id, None)).expect("events");
    let decisions: Vec<String> = events
        .into_iter()
        .filter(|e| e.kind == EventKind::Decision && e.message.starts_with("transport auto: "))
        .map(|e| e.message)
        .collect();
    assert_eq!((attempts.len(), decisions.len()), (1, 1), "{decisions:?}\n{said}");
    assert!(said.contains("transport auto: "), "the operator is told: {said}");
    (attempts.into_iter().next().expect("one"), decisions.into_iter().next().expect("one"))
}
