//! `--state postgres://…` through the binary, on a private PostgreSQL server and a simulated
//! fleet (no lab): a run journaled there is listed by another ferry, and a journal that
//! cannot be used is refused before anything starts — exit 2 for a malformed URL, exit 1 for
//! a wrong password, a server that does not answer, or a journal of a newer ferry — with no
//! password printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::ferry;
use ferry_journal::Journal;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A simulated fleet of 10 hosts, as a `--cluster` argument.
fn fleet() -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("state-fleet");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a test directory");
    let file = dir.join("fleet.toml");
    let out = ferry(&["sim", "gen", "--hosts", "10", "--vms", "40", "--seed", "3", "-o", path(&file)]);
    assert!(out.status.success(), "{}", text(&out));
    format!("sim:{}", path(&file))
}

/// The runs a journal holds, read directly.
fn runs(url: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let journal = Journal::open(url).await.expect("the journal opens");
        journal.runs().await.expect("runs").into_iter().map(|r| r.id).collect()
    })
}

#[test]
fn a_postgres_journal_is_shared_and_one_that_cannot_be_used_starts_nothing() {
    let mut server = ferry_pgtest::Server::start().expect("a PostgreSQL server (scripts/setup installs it)");
    let url = server.url(ferry_pgtest::DATABASE);
    let cluster = fleet();

    // A drain journaled on the server; another ferry lists it.
    let out = ferry(&["drain", "h-0001", "--cluster", &cluster, "--state", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = common::printed_run_id(&String::from_utf8_lossy(&out.stdout)).expect("a run id");
    let listed = ferry(&["runs", "--state", &url]);
    assert!(text(&listed).contains(&run), "{}", text(&listed));
    assert_eq!(runs(&url), std::slice::from_ref(&run));

    let password = server.password().to_owned();
    let refused = |args: &[&str], code: i32, says: &str| {
        let out = ferry(args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: expected {says:?} in:\n{said}");
        assert!(!said.contains(&password), "{args:?}: the password is printed:\n{said}");
    };
    let drain = |state: &str, code: i32, says: &str| {
        refused(&["drain", "h-0002", "--cluster", &cluster, "--state", state], code, says);
    };

    // A malformed URL: bad input, before anything.
    let malformed = format!("postgres://ferry:{}@/ferry", server.password());
    drain(&malformed, 2, "malformed journal URL");
    // A wrong password.
    let wrong = server.url_with_password(ferry_pgtest::DATABASE, "not-the-password");
    drain(&wrong, 1, "password authentication failed");
    // A journal of a newer ferry.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("a raw connection");
        sqlx::query("INSERT INTO schema_version (version, description, applied_ms) VALUES (999, 'future', 0)")
            .execute(&pool)
            .await
            .expect("a newer schema");
        pool.close().await;
    });
    drain(&url, 1, "has schema version 999");
    refused(&["runs", "--state", &url], 1, "has schema version 999");
    runtime.block_on(async {
        let pool = sqlx::AnyPool::connect(&url).await.expect("a raw connection");
        sqlx::query("DELETE FROM schema_version WHERE version = 999").execute(&pool).await.expect("back");
        pool.close().await;
    });
    // A server that does not answer.
    server.stop().expect("stops");
    drain(&url, 1, "Connection refused");
    server.start_again().expect("starts again");
    assert_eq!(runs(&url), [run], "none of them started a run");
}
