//! `ferry serve`: a journal's runs over HTTP, for browsers, monitoring and other tools.
//!
//! Every answer comes from the application layer the CLI uses (`ferry_runs`): `GET
//! /api/runs` is `ferry runs --output json`, `GET /api/runs/{id}` is `ferry report RUN
//! --format json`, `POST /api/runs/{id}/abort` is `ferry abort RUN`, so a run is the same
//! whichever way it is looked at or stopped, and any number of servers and CLIs may share one
//! journal (a PostgreSQL one across machines). `GET /api/runs/{id}/events` streams the
//! run's journal events as server-sent events (resumable with `Last-Event-ID`: an event's id
//! is its journal id); `GET /metrics` counts moves and downtimes in Prometheus' text format,
//! with the transfer figures of the migrations this server drives ([`live`]). `/` and
//! `/runs/{id}` are the web view: one static page whose script reads the API. [`tls`] serves
//! it all over HTTPS; [`Server::take_over_every`] resumes the runs whose controller died.
//!
//! Every API request needs a bearer token from the token file ([`tokens`]): `read` for the
//! rest, `operate` to start, resume and abort. No token: 401; a `read` token asking to
//! abort: 403; an unknown run: 404 with the CLI's words (and its "did you mean"); bodies over
//! 1 MiB: 413. Each request is logged with its role and how long its answer took.

pub mod live;
pub mod metrics;
pub mod tls;
pub mod tokens;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_journal::Journal;
use ferry_journal::RunState;
use ferry_runs::cluster::Cluster;
use ferry_runs::Events;
use futures_util::Stream;
use serde_json::json;
use tracing::{info, warn};

pub use tokens::{Role, Tokens};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

/// How long `POST /api/runs/{id}/abort` waits for the process driving the run to end it.
const ABORT_WAIT: Duration = Duration::from_secs(60);

/// How often an event stream looks for new events when it found none: the most an event
/// waits in the journal before it is sent. A look is one indexed query.
const EVENTS_EVERY: Duration = Duration::from_millis(50);

/// How many events an event stream reads at a time.
const EVENTS_PAGE: i64 = 500;

/// How often an event stream sends the figures of a run this server drives.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What every handler shares.
#[derive(Clone)]
struct App {
    journal: Journal,
    tokens: Tokens,
    /// The hosts (or the simulated fleet) previews and runs are for, when the server has one.
    cluster: Option<std::sync::Arc<Cluster>>,
    /// The runs this process drives, with their progress.
    live: std::sync::Arc<live::Live>,
}

/// An answer that went wrong: its status and the CLI's words for it.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl Refusal {
    /// An application-layer error: bad input about a run (an unknown id) is 404, other bad
    /// input 400, a refusal or failure 409.
    fn of(e: ferry_runs::Error, about_a_run: bool) -> Refusal {
        match e {
            ferry_runs::Error::BadInput(text) if about_a_run => Refusal(StatusCode::NOT_FOUND, text),
            ferry_runs::Error::BadInput(text) => Refusal(StatusCode::BAD_REQUEST, text),
            other => Refusal(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

/// A server on `journal` and `cluster`, for `tokens`.
#[derive(Clone)]
pub struct Server {
    app: App,
}

impl Server {
    /// A server of `journal`'s runs, previewing and starting runs on `cluster` when given.
    pub fn new(journal: Journal, tokens: Tokens, cluster: Option<Cluster>) -> Server {
        Server { app: App { journal, tokens, cluster: cluster.map(std::sync::Arc::new), live: Default::default() } }
    }

    /// Its routes.
    pub fn router(&self) -> Router {
        router(self.app.clone())
    }

    /// Takes over, every `every`, each running run whose controller is gone (a process of
    /// this machine that no longer runs, or one whose lease beat last more than a lease ago)
    /// and drives it to its end here, as `ferry resume` would: several servers on one
    /// journal keep its runs going while one of them lives. Only runs left `running` are
    /// taken: one an operator stopped stays stopped. Never returns.
    pub async fn take_over_every(&self, every: Duration) {
        let me = ferry_runs::owners::owner();
        // The runs tried, with the owner they had: one refused (a roll in a hook) is not
        // tried again until something about it changes.
        let mut tried: std::collections::HashSet<(String, Option<String>)> = Default::default();
        loop {
            tokio::time::sleep(every).await;
            let Ok(runs) = self.app.journal.runs().await else { continue };
            for run in runs {
                let orphaned = run.state == RunState::Running
                    && run.owner.as_deref().is_some_and(|o| o != me && o != ferry_runs::drivers::SIM_OWNER)
                    && !ferry_runs::owners::held_by_another(&run, &me);
                if !orphaned || !tried.insert((run.id.clone(), run.owner.clone())) {
                    continue;
                }
                let events = self.app.live.watching(logged(&run.id));
                let journal = self.app.journal.clone();
                let owner = run.owner.clone().unwrap_or_default();
                info!(run = %run.id, %owner, "taking over a run whose controller is gone");
                tokio::spawn(async move {
                    match ferry_runs::roll::resume(&journal, &run.id, false, &events).await {
                        Ok(all_succeeded) => {
                            info!(run = %run.id, all_succeeded, "run taken over and driven to its end")
                        }
                        Err(e) => warn!(run = %run.id, "could not take the run over: {e}"),
                    }
                });
            }
        }
    }
}

/// Events of a run driven here on nobody's request: its lines go to the log.
fn logged(run: &str) -> Events {
    let run = run.to_owned();
    Events::to(move |event| match event {
        ferry_runs::Event::Said(line) => info!(%run, "{line}"),
        ferry_runs::Event::Warning(line) => warn!(%run, "{line}"),
        _ => {}
    })
}

/// The routes of `app`.
fn router(app: App) -> Router {
    let operate = Router::new()
        .route("/api/runs", post(start))
        .route("/api/runs/{id}/abort", post(abort))
        .route("/api/runs/{id}/resume", post(resume))
        .route_layer(middleware::from_fn_with_state((app.clone(), Role::Operate), authorize));
    let read = Router::new()
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(report))
        .route("/api/runs/{id}/events", get(events))
        .route("/api/runs/{id}/html", get(report_html))
        .route("/api/whoami", get(whoami))
        .route("/api/preview", post(preview))
        .route("/api/inventory", get(inventory))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state((app.clone(), Role::Read), authorize));
    // The pages hold no data: their script asks the API for it, with the token.
    let pages = Router::new().route("/", get(page)).route("/runs/{id}", get(page));
    operate
        .merge(read)
        .merge(pages)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(middleware::from_fn_with_state(app.clone(), log_requests))
        .with_state(app)
}

/// Logs every request, whatever answered it, with the role of its token.
async fn log_requests(State(app): State<App>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let role = app.tokens.role_of(authorization(request.headers())).map_or("none", Role::name);
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    // Until the answer's head is ready: a stream's body goes on after.
    let ms = started.elapsed().as_millis() as u64;
    info!(role, %method, %path, status = response.status().as_u16(), ms, "request");
    response
}

/// Refuses (413) a request that announces a body over [`BODY_LIMIT`], before anything reads
/// it or acts on it; a body that announces nothing is held to the limit as it is read.
async fn refuse_large_bodies(request: Request, next: Next) -> Response {
    let announced =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(length) if length > BODY_LIMIT as u64 => {
            Refusal(StatusCode::PAYLOAD_TOO_LARGE, format!("a body of {length} bytes: the limit is {BODY_LIMIT}"))
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Serves `router` on `listener` (a [`tokio::net::TcpListener`], or a [`tls::TlsListener`])
/// until `shutdown` completes.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// The request's `Authorization` header, when it is text.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// Lets the request through when its token's role is at least `needed`.
async fn authorize(
    State((app, needed)): State<(App, Role)>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let given = authorization(&headers);
    let role = app.tokens.role_of(given);
    let refused = match role {
        None if given.is_none() => {
            Some(Refusal(StatusCode::UNAUTHORIZED, "give a token: Authorization: Bearer TOKEN".into()))
        }
        None => Some(Refusal(StatusCode::UNAUTHORIZED, "unknown token".into())),
        Some(role) if role < needed => Some(Refusal(
            StatusCode::FORBIDDEN,
            format!("{method} {path} needs the {} role; this token has {}", needed.name(), role.name()),
        )),
        Some(_) => None,
    };
    match refused {
        Some(refusal) => refusal.into_response(),
        None => next.run(request).await,
    }
}

async fn runs(State(app): State<App>) -> Result<Response, Refusal> {
    let views = ferry_runs::reading::run_views(&app.journal).await.map_err(|e| Refusal::of(e, false))?;
    Ok(Json(views).into_response())
}

async fn report(State(app): State<App>, Path(id): Path<String>) -> Result<Response, Refusal> {
    let report = ferry_runs::reading::report(&app.journal, &id).await.map_err(|e| Refusal::of(e, true))?;
    Ok(Json(report).into_response())
}

/// The live web view: the runs list at `/`, a run's page at `/runs/{id}` (one page; its
/// script tells them apart). Self-contained, and allowed to reach nothing but this server.
async fn page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
             img-src data:; frame-ancestors 'none'; form-action 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, PAGE).into_response()
}

/// The web view's one page.
const PAGE: &str = include_str!("page.html");

/// The role of the request's token, for the web view to offer what it may do.
async fn whoami(State(app): State<App>, headers: HeaderMap) -> Response {
    Json(json!({ "role": app.tokens.role_of(authorization(&headers)).map_or("none", Role::name) })).into_response()
}

/// `ferry report RUN --format html`, as of now: what the run page shows and refreshes.
async fn report_html(State(app): State<App>, Path(id): Path<String>) -> Result<Response, Refusal> {
    let started = std::time::Instant::now();
    let report = ferry_runs::reading::report(&app.journal, &id).await.map_err(|e| Refusal::of(e, true))?;
    let read_ms = started.elapsed().as_millis() as u64;
    // A 10,000-VM page takes a while to write: not on a worker that event streams share.
    let html = tokio::task::spawn_blocking(move || ferry_report::html::render(&report))
        .await
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering failed: {e}")))?;
    tracing::debug!(run = %id, read_ms, render_ms = started.elapsed().as_millis() as u64 - read_ms, "report page");
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

async fn abort(State(app): State<App>, Path(id): Path<String>) -> Result<Response, Refusal> {
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let events = {
        let said = said.clone();
        Events::to(move |event| {
            if let ferry_runs::Event::Said(line) = event {
                said.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        })
    };
    let (how, all_succeeded) =
        ferry_runs::abort::abort(&app.journal, &id, ABORT_WAIT, &events).await.map_err(|e| Refusal::of(e, true))?;
    let outcome = match how {
        ferry_runs::abort::Aborted::AlreadyEnded(state) => format!("already {state}"),
        ferry_runs::abort::Aborted::ByItsOwner(state) => format!("{state} by the process driving it"),
        ferry_runs::abort::Aborted::Here => "aborted here: no process was driving it".to_owned(),
    };
    let said = said.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Json(json!({ "run": id, "outcome": outcome, "all_succeeded": all_succeeded, "said": said })).into_response())
}

/// The run's journal events from the one after `Last-Event-ID`, then each new one as it is
/// journaled, until the run has ended and every event is sent. While this server drives the
/// run, a `progress` event (no id: it is not in the journal) carries its board's figures
/// every second: the ETA and each migration in flight with its last sample.
async fn events(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Refusal> {
    let run = ferry_runs::owners::find_run(&app.journal, &id).await.map_err(|e| Refusal::of(e, true))?;
    let after: i64 =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let follower = Follower {
        journal: app.journal,
        live: app.live,
        run: run.id,
        after,
        queue: std::collections::VecDeque::new(),
        ended: false,
        progress_at: None,
    };
    let stream = futures_util::stream::unfold(follower, |mut follower| async move {
        let sent = follower.next().await?;
        Some((Ok(sent), follower))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Where an event stream is in its run's journal.
struct Follower {
    journal: Journal,
    live: std::sync::Arc<live::Live>,
    run: String,
    /// The last event sent (its journal id).
    after: i64,
    queue: std::collections::VecDeque<ferry_journal::Event>,
    /// Whether the run had ended when its events were last read.
    ended: bool,
    /// When the last `progress` event was sent.
    progress_at: Option<std::time::Instant>,
}

impl Follower {
    /// The next event to send; none once the run has ended and every event is sent.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(to_sse(&event));
            }
            if self.ended {
                return None;
            }
            if self.progress_at.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
                if let Some(snapshot) = self.live.snapshot(&self.run) {
                    self.progress_at = Some(std::time::Instant::now());
                    return Some(SseEvent::default().event("progress").data(json!(snapshot).to_string()));
                }
            }
            let new = self.journal.events_after(&self.run, self.after, EVENTS_PAGE).await.unwrap_or_default();
            if new.is_empty() {
                // Nothing new: has the run ended? Then one more read takes what was journaled
                // before it ended and after the read above, and the stream ends.
                self.ended = self.journal.run(&self.run).await.map(|r| r.state.is_ended()).unwrap_or(true);
                if !self.ended {
                    tokio::time::sleep(EVENTS_EVERY).await;
                    continue;
                }
                let last = self.journal.events_after(&self.run, self.after, i64::MAX).await.unwrap_or_default();
                self.queue.extend(last);
                continue;
            }
            self.after = new.last().map_or(self.after, |e| e.id);
            self.queue.extend(new);
        }
    }
}

fn to_sse(event: &ferry_journal::Event) -> SseEvent {
    let data = json!({
        "id": event.id,
        "uuid": event.uuid,
        "at_ms": event.at_ms,
        "kind": event.kind.name(),
        "message": event.message,
        "data": event.data,
    });
    SseEvent::default().id(event.id.to_string()).event(event.kind.name()).data(data.to_string())
}

/// A plan in the body — TOML, or CSV (`vm,to,group,order`) with `Content-Type: text/csv`
/// — previewed on the server's cluster: `ferry preview`'s JSON. A bad plan is 400 with the
/// CLI's messages, the body named as the file (`request body:3: …`).
async fn preview(State(app): State<App>, headers: HeaderMap, body: String) -> Result<Response, Refusal> {
    let cluster = app.cluster.clone().ok_or_else(no_cluster)?;
    let plan = plan_of(&headers, &body)?;
    not_a_roll(&plan, "`ferry preview` shows its waves")?;
    // What it notes on the way (a VM it could not measure) is the CLI's to print.
    let events = Events::ignored();
    let ask = ferry_runs::preview::PreviewAsk { measure_seconds: 3, ..Default::default() };
    let preview = ferry_runs::preview::preview_moves(&cluster, &plan, ask, Some(&app.journal), &events)
        .await
        .map_err(|e| Refusal::of(e, false))?;
    Ok(Json(preview).into_response())
}

/// Starts the plan in the body (as `POST /api/preview` reads it) on the server's cluster, as
/// `ferry migrate` does, and answers once it is journaled: 201 with its id, its moves and
/// how many fail their checks; bad input (a plan that does not resolve) is 400 with the
/// CLI's messages and starts nothing. The run goes on in this server's process.
async fn start(State(app): State<App>, headers: HeaderMap, body: String) -> Result<Response, Refusal> {
    let cluster = app.cluster.clone().ok_or_else(no_cluster)?;
    if matches!(*cluster, Cluster::Sim(_)) {
        return Err(Refusal(
            StatusCode::CONFLICT,
            "a simulated fleet's runs are started with the CLI: they run in virtual time".into(),
        ));
    }
    let plan = plan_of(&headers, &body)?;
    not_a_roll(&plan, "`ferry roll` runs it")?;
    let (events, created) = first_event(|event| match event {
        ferry_runs::Event::Created { run, moves, failing, .. } => Some((run, moves, failing)),
        _ => None,
    });
    let run = ferry_runs::start::Start {
        plan,
        cluster: (*cluster).clone(),
        journal: ferry_runs::start::JournalTo::Open(app.journal.clone()),
        ignore: Vec::new(),
        measure: false,
        wave_of: None,
    };
    let events = app.live.watching(events);
    let running = tokio::spawn(async move { ferry_runs::start::start(run, &events).await });
    match created.await {
        Ok((run, moves, failing)) => {
            info!(%run, moves, "started over HTTP");
            let answer = json!({ "run": run, "moves": moves, "failing": failing });
            Ok((StatusCode::CREATED, Json(answer)).into_response())
        }
        // It ended before it was journaled: what stopped it is the answer.
        Err(_) => match running.await {
            Ok(Err(e)) => Err(Refusal::of(e, false)),
            Ok(Ok(_)) => Err(Refusal(StatusCode::CONFLICT, "the plan ended before it was journaled".into())),
            Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("the run's task failed: {e}"))),
        },
    }
}

/// Resumes run `id` in this server's process, as `ferry resume` does: 202 once it is being
/// driven here; 409 when another live process drives it (named) or it cannot be resumed; 200
/// when it had nothing left to do.
async fn resume(State(app): State<App>, Path(id): Path<String>) -> Result<Response, Refusal> {
    let (events, driving) = first_event(|event| match event {
        ferry_runs::Event::Driving { run, .. } => Some(run),
        _ => None,
    });
    let events = app.live.watching(events);
    let journal = app.journal.clone();
    let run = id.clone();
    let mut resuming = tokio::spawn(async move { ferry_runs::roll::resume(&journal, &run, false, &events).await });
    tokio::select! {
        Ok(run) = driving => {
            info!(%run, "resumed over HTTP");
            Ok((StatusCode::ACCEPTED, Json(json!({ "run": id, "driving": run }))).into_response())
        }
        ended = &mut resuming => match ended {
            Ok(Ok(all_succeeded)) => Ok(Json(json!({ "run": id, "all_succeeded": all_succeeded })).into_response()),
            Ok(Err(e)) => Err(Refusal::of(e, true)),
            Err(e) => Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, format!("the resume's task failed: {e}"))),
        },
    }
}

/// Events that hand the first one `pick` takes to the receiver, and drop the rest (they are
/// journaled anyway): how a request learns that the run it started got this far.
fn first_event<T: Send + 'static>(
    pick: impl Fn(ferry_runs::Event) -> Option<T> + Send + Sync + 'static,
) -> (Events, tokio::sync::oneshot::Receiver<T>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let events = Events::to(move |event| {
        if let Some(value) = pick(event) {
            if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(value);
            }
        }
    });
    (events, rx)
}

/// A plan in a request's body: TOML, or CSV with `Content-Type: text/csv`; bad input names
/// the body as its file.
fn plan_of(headers: &HeaderMap, body: &str) -> Result<ferry_plan::Plan, Refusal> {
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim().starts_with("text/csv"));
    let parsed =
        if csv { ferry_plan::parse_plan_csv(PLAN_BODY, body) } else { ferry_plan::parse_plan_toml(PLAN_BODY, body) };
    let plan = parsed.map_err(|errors| {
        Refusal(StatusCode::BAD_REQUEST, errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })?;
    Ok(plan)
}

/// Refuses a roll plan, which `instead` handles.
fn not_a_roll(plan: &ferry_plan::Plan, instead: &str) -> Result<(), Refusal> {
    match plan.roll {
        Some(_) => Err(Refusal(StatusCode::BAD_REQUEST, format!("a roll plan: {instead}"))),
        None => Ok(()),
    }
}

fn no_cluster() -> Refusal {
    Refusal(StatusCode::CONFLICT, "this server has no cluster: start it with --cluster".into())
}

/// The server's cluster as the hosts report it: `ferry inventory --output json` (hosts that
/// cannot be reached are listed in it).
async fn inventory(State(app): State<App>) -> Result<Response, Refusal> {
    let cluster = app.cluster.clone().ok_or_else(no_cluster)?;
    let driver = ferry_runs::drivers::AnyDriver::new(&cluster);
    Ok(Json(ferry_driver::Driver::inventory(&driver).await).into_response())
}

/// How a plan sent in a request's body is named in messages about it.
const PLAN_BODY: &str = "request body";

async fn metrics(State(app): State<App>) -> Result<Response, Refusal> {
    let text = metrics::read(&app.journal, &app.live.snapshots())
        .await
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
