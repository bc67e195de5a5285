//! `ferry serve`: the journal's runs over HTTP (`ferry-serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use ferry_serve::Tokens;

use crate::cluster::ClusterArg;
use crate::show::{out, EXIT_BAD_INPUT, EXIT_FAILURE};
use crate::state::StateArg;

/// `ferry serve` arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen: ADDRESS:PORT (port 0: any free one; the first line printed says
    /// which).
    #[arg(long, default_value = "127.0.0.1:8340", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The bearer tokens the server accepts, one `read TOKEN` or `operate TOKEN` per line;
    /// the file must be readable by its owner only (0600).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    #[command(flatten)]
    pub state: StateArg,
    /// The hosts previews and runs started over HTTP are for: a cluster file, or `sim:FILE`
    /// (previews only); without one that can be found, those requests say so (409).
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Leave the runs whose controller died to an operator's `ferry resume`; by default
    /// the server takes each over once its lease has run out and drives it to its end.
    #[arg(long)]
    pub no_takeover: bool,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`; keep it readable by its owner only.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How often the server looks for runs whose controller is gone: well inside a lease.
const TAKEOVER_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// Runs `ferry serve` until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> ExitCode {
    one_malloc_arena();
    let tokens = match Tokens::load(&args.token_file) {
        Ok(tokens) => tokens,
        Err(e) => return fail("--token-file", &e.to_string(), EXIT_BAD_INPUT),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match ferry_serve::tls::config(cert, key) {
            Ok(config) => Some(config),
            Err(e) => return fail("--tls-cert", &e.to_string(), EXIT_BAD_INPUT),
        },
        _ => None,
    };
    // A cluster given and bad is bad input; none found is a server that only reads runs.
    let cluster = match (args.cluster.location(), ferry_runs::cluster::read(args.cluster.location())) {
        (_, Ok(cluster)) => Some(cluster),
        (Some(_), Err(e)) => return fail("--cluster", &e, EXIT_BAD_INPUT),
        (None, Err(_)) => None,
    };
    // A server starts runs: its journal is created when it is new.
    let opened = match args.state.at() {
        Ok(at) => at.open_with_clock(ferry_journal::JournalClock::System).await,
        Err(e) => Err(ferry_runs::Error::BadInput(e)),
    };
    let journal = match opened {
        Ok(journal) => journal,
        Err(ferry_runs::Error::BadInput(e)) => {
            return fail("--state", e.trim_start_matches("--state: "), EXIT_BAD_INPUT)
        }
        Err(e) => return fail("--state", &e.to_string(), EXIT_FAILURE),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => return fail("--listen", &format!("cannot listen on {}: {e}", args.listen), EXIT_FAILURE),
    };
    let at = listener.local_addr().map_or_else(|_| args.listen.to_string(), |a| a.to_string());
    let server = ferry_serve::Server::new(journal.clone(), tokens, cluster);
    if !args.no_takeover {
        let server = server.clone();
        tokio::spawn(async move { server.take_over_every(TAKEOVER_EVERY).await });
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    out!("ferry serve: listening on {scheme}://{at} (journal {})", journal.location());
    // Two listener types: the same call for each.
    let served = match tls {
        Some(config) => match ferry_serve::tls::TlsListener::new(listener, config) {
            Ok(listener) => ferry_serve::serve(listener, server.router(), stopped()).await,
            Err(e) => return fail("--listen", &e.to_string(), EXIT_FAILURE),
        },
        None => ferry_serve::serve(listener, server.router(), stopped()).await,
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("serve", &e.to_string(), EXIT_FAILURE),
    }
}

/// Completes on Ctrl-C or SIGTERM: the server finishes the requests it has and stops.
async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A report of a big run is tens of MiB of short-lived records, built on whichever worker
/// thread takes the request; with glibc's arena per thread, what one request freed stayed in
/// its thread's arena while the next grew another. One arena: the server's peak on a
/// 3,049-move run's report, five reads, fell from 262 to 155 MiB (`ferry serve`'s requests are few; the
/// lock they share costs nothing measurable).
fn one_malloc_arena() {
    // SAFETY: mallopt only sets an allocator parameter; called before the server's threads
    // allocate much, and valid at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn fail(what: &str, text: &str, code: u8) -> ExitCode {
    eprintln!("ferry serve: {what}: {text}");
    ExitCode::from(code)
}
