//! What a `ferry serve` started on `--listen 127.0.0.1:0` says first: where it listens.
//! Shared by the serve tests and the serve benchmark, with how a child's first line is read.

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;

/// The port of the first line `ferry serve` prints (`… listening on http://127.0.0.1:PORT …`,
/// or `https://`); the rest of its output is read and dropped, so that a later print does
/// not fail on a closed pipe.
pub fn listening_port(out: ChildStdout) -> u16 {
    let first = first_line(out);
    first
        .split("://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"))
}

/// The first line a child prints; the rest is read and dropped (a closed pipe would fail its
/// later prints).
pub fn first_line(out: ChildStdout) -> String {
    let mut reader = BufReader::new(out);
    let mut first = String::new();
    reader.read_line(&mut first).expect("a first line");
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    first
}
