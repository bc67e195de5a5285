//! Opening the journal, and every read and write.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_model::{Compression, Phase, Status};
use serde_json::{json, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::error::ErrorKind;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row, Transaction};

use crate::error::{JournalError, Result};
use crate::lease::Lease;
use crate::records::{
    Attempt, AttemptEnd, AttemptKind, Event, EventKind, Move, NewAttempt, NewMove, NewRun, Run, RunDocuments, RunKind,
    RunState,
};
use crate::{id, schema};

/// The generation of a record just created; every change adds one.
pub const FIRST_GENERATION: i64 = 1;

/// When a commit is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is synced to disk before it returns (`synchronous = FULL`): a phase
    /// written before its side effect survives a crash of the machine, not only of ferry.
    Full,
    /// The WAL is synced only at checkpoints (`synchronous = NORMAL`; on PostgreSQL
    /// `synchronous_commit = off`): commits survive a crash of ferry but the last ones may be
    /// lost with the machine (of the server).
    Normal,
}

/// How to open a journal.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// How long a writer waits for another connection's write lock (SQLite's busy
    /// timeout) before failing with "database is locked". Transactions last
    /// milliseconds, so only a stopped or hung process holding the lock reaches it.
    pub busy_timeout: Duration,
    /// When a commit is on disk.
    pub durability: Durability,
    /// Connections in this process's pool.
    pub max_connections: u32,
    /// Where timestamps come from.
    pub clock: JournalClock,
    /// How long an operation is tried again, with growing pauses, while a database server
    /// does not answer (restarting, unreachable): the operation fails only after this, so a
    /// caller that writes its intent before each effect starts nothing meanwhile. A local
    /// SQLite file never needs it.
    pub retry_for: Duration,
}

/// Where a journal's timestamps come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum JournalClock {
    /// The system's wall clock.
    #[default]
    System,
    /// Virtual time, for a simulated run on a tokio runtime whose time is paused: `unix_ms`
    /// when the journal is opened, then as far as that runtime's clock has advanced. Open
    /// the journal on that runtime. Each operation then also runs to its end without
    /// yielding to it (SQLite's work is done on a runtime of the journal's own), so that an
    /// operation takes no virtual time and the order of a simulation's events does not depend
    /// on how fast the disk is: the same simulation writes the same journal.
    Virtual {
        /// Milliseconds since the Unix epoch when the journal is opened.
        unix_ms: i64,
    },
}

impl Default for JournalConfig {
    fn default() -> JournalConfig {
        JournalConfig {
            busy_timeout: Duration::from_secs(15),
            // FULL, although NORMAL is already safe against a crash of ferry in WAL mode:
            // the journal is written *before* each side effect (a migration started, a
            // volume deleted) precisely so that it is not lost, and with NORMAL a power
            // loss after the side effect can roll back the record that announced it.
            // It costs one fsync per commit, a few milliseconds here (see the benchmark),
            // against migrations that take seconds.
            durability: Durability::Full,
            max_connections: 4,
            clock: JournalClock::System,
            // As long as a run's owner counts as alive without a heartbeat: a controller
            // that cannot write for longer has lost its claim to the run anyway.
            retry_for: Duration::from_millis(crate::OWNER_ALIVE_WITHIN_MS.unsigned_abs()),
        }
    }
}

/// A handle on a journal. Cheap to clone; every clone shares one connection pool.
/// Several processes may open the same file at once.
///
/// Clones also share the leases claimed through any of them: once a handle claimed a run,
/// its state-changing writes to that run (run state, move status, phase and target,
/// attempts, moves added) are fenced: each checks, in its own transaction, that the run's
/// lease epoch is still the one claimed, and fails with [`JournalError::LeaseLost`]
/// otherwise. Writes to runs the handle never claimed are not checked (a run being
/// created, `ferry abort`'s request, events).
#[derive(Debug, Clone)]
pub struct Journal {
    pool: AnyPool,
    backend: Backend,
    /// Where it was opened from, without a password.
    location: String,
    time: Time,
    /// How long an operation is tried again while the database does not answer.
    retry_for: Duration,
    /// Run id → (epoch, owner) of the leases claimed through this handle or its clones.
    leases: Arc<Mutex<HashMap<String, (i64, String)>>>,
}

/// The database under a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// A file of this machine's.
    Sqlite,
    /// A server, shared by the controllers that use it.
    Postgres,
}

/// The key of the PostgreSQL advisory lock every journal writer holds for its transaction
/// (an arbitrary number of ferry's own: "ferryjnl" in ASCII).
const WRITERS_LOCK: i64 = 0x6665_7272_796a_6e6c;

/// A journal's clock, and where its operations run.
#[derive(Debug, Clone)]
enum Time {
    /// The wall clock; operations run on the caller's runtime.
    System,
    /// Virtual time from the caller's paused runtime; operations block that runtime's
    /// thread while the journal's own runtime does SQLite's part.
    Virtual { unix_ms: i64, start: tokio::time::Instant, runtime: Arc<OwnRuntime>, off_thread: bool },
}

impl Time {
    fn new(clock: JournalClock, backend: Backend) -> std::io::Result<Time> {
        Ok(match clock {
            JournalClock::System => Time::System,
            JournalClock::Virtual { unix_ms } => Time::Virtual {
                unix_ms,
                start: tokio::time::Instant::now(),
                off_thread: backend == Backend::Postgres,
                runtime: Arc::new(OwnRuntime(Some(
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .thread_name("ferry-journal")
                        .enable_all()
                        .build()?,
                ))),
            },
        })
    }

    /// Milliseconds since the epoch now. Read on the caller's runtime: on the journal's
    /// own, tokio's clock is the wall clock.
    fn now_ms(&self) -> i64 {
        match self {
            Time::System => now_ms(),
            Time::Virtual { unix_ms, start, .. } => {
                unix_ms.saturating_add(i64::try_from(start.elapsed().as_millis()).unwrap_or(i64::MAX))
            }
        }
    }

    /// Waits `pause` of wall time: on the caller's runtime, or, in virtual time, blocking this
    /// thread, since the caller's clock stands still while the journal works (a timer of
    /// its runtime would never fire).
    async fn pause(&self, pause: Duration) {
        match self {
            Time::System => tokio::time::sleep(pause).await,
            Time::Virtual { .. } => std::thread::sleep(pause),
        }
    }

    /// Runs `op` to its end: awaited on the caller's runtime, or, in virtual time, with the
    /// journal's own runtime as tokio's context (the pool's background tasks and timers live
    /// there), the caller's runtime blocked meanwhile: on this thread for SQLite; on a
    /// thread of its own for a server, because tokio defers the wake-up of a task that
    /// yields (as sqlx's password authentication does) to the scheduler of the thread it
    /// runs on, and this thread's is the caller's, which is blocked.
    async fn run<T: Send>(&self, op: impl Future<Output = T> + Send) -> T {
        match self {
            Time::System => op.await,
            Time::Virtual { runtime, off_thread: false, .. } => runtime.block_on(op),
            Time::Virtual { runtime, off_thread: true, .. } => std::thread::scope(|scope| {
                let ran = scope.spawn(|| runtime.block_on(op)).join();
                ran.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }),
        }
    }
}

/// The journal's own runtime in virtual time, shut down without waiting when the last
/// handle goes (which may be inside another runtime, where waiting is not allowed).
#[derive(Debug)]
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn block_on<T>(&self, op: impl Future<Output = T>) -> T {
        let runtime = self.0.as_ref().expect("the runtime lives until the handle is dropped");
        let _context = runtime.enter();
        // Unconstrained: the caller's task may have spent its cooperative budget, and a
        // tokio primitive inside the pool would then never be ready.
        let op = std::pin::pin!(tokio::task::unconstrained(op));
        block_here(op)
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Polls `op` on this thread, parking between polls, until it is ready.
fn block_here<T>(mut op: std::pin::Pin<&mut impl Future<Output = T>>) -> T {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = op.as_mut().poll(&mut cx) {
            return value;
        }
        std::thread::park();
    }
}

/// The columns of a [`Run`], in `run_from_row`'s order.
macro_rules! run_columns {
    () => {
        "id, plan_name, kind, parent, state, abort_requested, owner, heartbeat_ms, \
         created_ms, updated_ms, finished_ms, generation"
    };
}

/// The columns of a [`Move`].
macro_rules! move_columns {
    () => {
        "run, uuid, vm, source, target, group_name, seq, priority, status, phase, phase_done, \
         message, started_ms, ended_ms, updated_ms, generation"
    };
}

/// The columns of an [`Attempt`].
macro_rules! attempt_columns {
    () => {
        "run, uuid, number, kind, target, started_ms, ended_ms, outcome, message, wall_ms, \
         job_ms, downtime_ms, bytes, passes, estimate, compression, memory_bytes, memory_sent_bytes"
    };
}

/// The latest finished attempt of a VM (`$1`) that carried memory and meets a condition.
macro_rules! last_attempt_sql {
    ($condition:literal) => {
        concat!(
            "SELECT ",
            attempt_columns!(),
            " FROM attempts WHERE uuid = $1 AND ",
            $condition,
            " AND ended_ms IS NOT NULL AND memory_bytes > 0 AND memory_sent_bytes > 0 \
             ORDER BY ended_ms DESC, run DESC LIMIT 1"
        )
    };
}

/// The columns of an [`Event`].
macro_rules! event_columns {
    () => {
        "id, run, uuid, at_ms, kind, message, data"
    };
}

impl Journal {
    /// Opens (creating it and its directory if needed) the journal at `location` — a file
    /// path, a `sqlite://` URL or a `postgres://` URL — with the default configuration, and
    /// brings its schema up to date.
    pub async fn open(location: &str) -> Result<Journal> {
        Journal::open_with(location, &JournalConfig::default()).await
    }

    /// [`Journal::open`] with a configuration.
    pub async fn open_with(location: &str, config: &JournalConfig) -> Result<Journal> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            let options = check_server_url(location)?;
            return Journal::connect(redacted(location), Backend::Postgres, options, config).await;
        }
        let options = if location.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(location)
                .map_err(|cause| JournalError::Open { location: location.to_owned(), cause })?;
            create_parent(options.get_filename())?;
            options
        } else if location.contains("://") {
            return Err(JournalError::UnsupportedLocation { location: redacted(location) });
        } else {
            create_parent(Path::new(location))?;
            SqliteConnectOptions::new().filename(location)
        };
        Journal::connect_sqlite(location.to_owned(), options, config).await
    }

    /// Opens the journal file at `path` (for paths that are not UTF-8).
    pub async fn open_path(path: &Path, config: &JournalConfig) -> Result<Journal> {
        create_parent(path)?;
        make_private(path)?;
        let options = SqliteConnectOptions::new().filename(path);
        Journal::connect_sqlite(path.display().to_string(), options, config).await
    }

    /// A SQLite file, through the same pool type as PostgreSQL: its options travel as a
    /// URL, and the settings a URL cannot carry are set on each new connection.
    async fn connect_sqlite(
        location: String,
        options: SqliteConnectOptions,
        config: &JournalConfig,
    ) -> Result<Journal> {
        let url = options.create_if_missing(true).to_url_lossy();
        let options = AnyConnectOptions::from_url(&url)
            .map_err(|cause| JournalError::Open { location: location.clone(), cause })?;
        Journal::connect(location, Backend::Sqlite, options, config).await
    }

    async fn connect(
        location: String,
        backend: Backend,
        options: AnyConnectOptions,
        config: &JournalConfig,
    ) -> Result<Journal> {
        sqlx::any::install_default_drivers();
        let time = Time::new(config.clock, backend).map_err(|cause| JournalError::Runtime { cause })?;
        let durability = config.durability;
        let session: Vec<String> = match backend {
            Backend::Sqlite => vec![format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA busy_timeout = {}; \
                 PRAGMA foreign_keys = ON",
                match durability {
                    Durability::Full => "FULL",
                    Durability::Normal => "NORMAL",
                },
                config.busy_timeout.as_millis()
            )],
            Backend::Postgres => vec![
                // Statements wait at most the busy timeout for a lock, as on SQLite.
                format!("SET lock_timeout = {}", config.busy_timeout.as_millis()),
                // NORMAL's promise on PostgreSQL: a commit survives this process, and may be
                // lost (never half-applied) with the server's machine.
                format!("SET synchronous_commit = {}", if durability == Durability::Full { "on" } else { "off" }),
            ],
        };
        // Switching a new file to WAL takes a lock that SQLite does not wait for, so two
        // processes creating the journal at the same moment may see "database is
        // locked" once: retry within the busy timeout.
        let deadline = Instant::now() + config.busy_timeout;
        let now = time.now_ms();
        // A server's pool waits this long for a connection before the operation is retried
        // (see `hold`); a server that does not answer when the journal is opened is an error
        // at once, from a first connection of its own.
        let acquire_timeout = match backend {
            Backend::Sqlite => config.busy_timeout,
            Backend::Postgres => config.busy_timeout.min(Duration::from_secs(2)),
        };
        let connecting = async {
            if backend == Backend::Postgres {
                let first = AnyConnection::connect_with(&options).await;
                first.map_err(|cause| JournalError::Open { location: location.clone(), cause })?.close().await.ok();
            }
            loop {
                let attempt = async {
                    let session = session.clone();
                    let pool = AnyPoolOptions::new()
                        .max_connections(config.max_connections.max(1))
                        .acquire_timeout(acquire_timeout)
                        .after_connect(move |conn, _| {
                            let session = session.clone();
                            Box::pin(async move {
                                for statement in session {
                                    conn.execute(sqlx::AssertSqlSafe(statement)).await?;
                                }
                                Ok(())
                            })
                        })
                        .connect_with(options.clone())
                        .await
                        .map_err(|cause| JournalError::Open { location: location.clone(), cause })?;
                    let journal = Journal {
                        pool,
                        backend,
                        location: location.clone(),
                        time: time.clone(),
                        retry_for: config.retry_for,
                        leases: Arc::default(),
                    };
                    journal.migrate(now).await?;
                    Ok(journal)
                };
                match attempt.await {
                    Err(e) if is_busy(&e) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    result => return result,
                }
            }
        };
        time.run(connecting).await
    }

    /// Runs one operation at the time of the moment (see [`JournalClock::Virtual`]), again
    /// while the database server does not answer, for up to [`JournalConfig::retry_for`].
    /// An operation is one transaction or one statement, so a try that failed left nothing
    /// behind; one whose commit reached the server but whose answer was lost is the one
    /// case a retry can repeat (a compare-and-swap then reports a conflict).
    async fn hold<T: Send, F: Future<Output = Result<T>> + Send>(&self, op: impl Fn(i64) -> F) -> Result<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            let now = self.time.now_ms();
            match self.time.run(op(now)).await {
                Err(e) if is_unreachable(&e) && started.elapsed() + pause < self.retry_for => {
                    self.time.pause(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                result => return result,
            }
        }
    }

    /// Applies the migrations this file lacks, all in one transaction.
    async fn migrate(&self, now: i64) -> Result<()> {
        let migrate_error = |version: i64| {
            let location = self.location.clone();
            move |cause| JournalError::Migrate { location, version, cause }
        };
        // A journal already at this schema is opened without the write lock: a reader
        // (`ferry status`, a resume that will be refused) must not wait on a writer, not
        // even on one that was stopped (SIGSTOP) inside its transaction.
        let found: std::result::Result<Option<i64>, _> =
            sqlx::query_scalar("SELECT MAX(version) FROM schema_version").fetch_one(&self.pool).await;
        if found.is_ok_and(|v| v == Some(schema::latest())) {
            return Ok(());
        }
        let mut tx = self.begin_write().await.map_err(|e| match e {
            JournalError::Database(cause) => migrate_error(0)(cause),
            other => other,
        })?;
        sqlx::query(schema::SCHEMA_VERSION_TABLE).execute(&mut *tx).await.map_err(migrate_error(0))?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(migrate_error(0))?;
        let current = current.unwrap_or(0);
        if current > schema::latest() {
            return Err(JournalError::NewerSchema {
                location: self.location.clone(),
                found: current,
                known: schema::latest(),
            });
        }
        for migration in schema::MIGRATIONS.iter().filter(|m| m.version > current) {
            for statement in migration.statements {
                sqlx::query(*statement).execute(&mut *tx).await.map_err(migrate_error(migration.version))?;
            }
            sqlx::query("INSERT INTO schema_version (version, description, applied_ms) VALUES ($1, $2, $3)")
                .bind(migration.version)
                .bind(migration.description)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(migrate_error(migration.version))?;
        }
        tx.commit().await.map_err(migrate_error(schema::latest()))?;
        Ok(())
    }

    /// The location the journal was opened from.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Closes every connection of this handle's pool, checkpointing the WAL when this is
    /// the last connection to the file. Dropping the handle instead is safe: every commit
    /// is already on disk.
    pub async fn close(self) {
        let time = self.time.clone();
        time.run(self.pool.close()).await;
    }

    /// The schema versions applied to this file, oldest first.
    pub async fn applied_versions(&self) -> Result<Vec<i64>> {
        self.hold(|_| async move {
            Ok(sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version").fetch_all(&self.pool).await?)
        })
        .await
    }

    /// A write transaction, holding the journal's one write lock until it ends, on both
    /// backends: writers take turns, so an event's id (the largest plus one) is unique and
    /// a compare-and-swap reads what no one else is changing. On SQLite `BEGIN IMMEDIATE`
    /// takes the lock at once, waiting for it under the busy timeout (a deferred transaction
    /// that reads and then writes can instead fail at once with "database is locked" when
    /// another connection committed in between). On PostgreSQL it is a transaction-scoped
    /// advisory lock, which every controller sharing the database takes alike.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(WRITERS_LOCK).execute(&mut *tx).await?;
                Ok(tx)
            }
        }
    }

    // ---------------------------------------------------------------- runs

    /// Creates a run in state `running`, with a fresh id, and returns it.
    pub async fn create_run(&self, new: &NewRun) -> Result<Run> {
        self.hold(|now| async move {
            let mut clashes = 0;
            loop {
                let run_id = id::run_id(now, id::random_suffix());
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(
                    "INSERT INTO runs (id, plan_name, plan, cluster, kind, parent, state, \
                     abort_requested, owner, heartbeat_ms, created_ms, updated_ms, finished_ms, \
                     generation) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 0, NULL, NULL, $8, $8, NULL, $9)",
                )
                .bind(&run_id)
                .bind(&new.plan_name)
                .bind(new.plan.to_string())
                .bind(new.cluster.to_string())
                .bind(new.kind.name())
                .bind(new.parent.as_deref())
                .bind(RunState::Running.name())
                .bind(now)
                .bind(FIRST_GENERATION)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(sqlx::Error::Database(e)) if e.kind() == ErrorKind::UniqueViolation && clashes < 8 => {
                        clashes += 1;
                        continue;
                    }
                    Err(sqlx::Error::Database(e)) if e.kind() == ErrorKind::ForeignKeyViolation => {
                        return Err(JournalError::RunNotFound { run: new.parent.clone().unwrap_or_default() });
                    }
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                let message = match &new.parent {
                    Some(parent) => format!("{} run of plan {} created for run {parent}", new.kind, new.plan_name),
                    None => format!("{} run of plan {} created", new.kind, new.plan_name),
                };
                insert_event(&mut tx, &run_id, None, now, EventKind::Run, &message, None).await?;
                tx.commit().await?;
                return Ok(Run {
                    id: run_id,
                    plan_name: new.plan_name.clone(),
                    kind: new.kind,
                    parent: new.parent.clone(),
                    state: RunState::Running,
                    abort_requested: false,
                    owner: None,
                    heartbeat_ms: None,
                    created_ms: now,
                    updated_ms: now,
                    finished_ms: None,
                    generation: FIRST_GENERATION,
                });
            }
        })
        .await
    }

    /// The run `id`.
    pub async fn run(&self, id: &str) -> Result<Run> {
        self.hold(|_| async move {
            let row = sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            match row {
                Some(row) => run_from_row(&row),
                None => Err(JournalError::RunNotFound { run: id.to_owned() }),
            }
        })
        .await
    }

    /// The plan and cluster documents run `id` started from.
    pub async fn run_documents(&self, id: &str) -> Result<RunDocuments> {
        self.hold(|_| async move {
            let row = sqlx::query("SELECT plan, cluster FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| JournalError::RunNotFound { run: id.to_owned() })?;
            Ok(RunDocuments {
                plan: parse_json(row.try_get("plan")?, "runs", "plan")?,
                cluster: parse_json(row.try_get("cluster")?, "runs", "cluster")?,
            })
        })
        .await
    }

    /// Every run, newest first.
    pub async fn runs(&self) -> Result<Vec<Run>> {
        self.hold(|_| async move {
            sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs ORDER BY created_ms DESC, id DESC"))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(run_from_row)
                .collect()
        })
        .await
    }

    /// The newest run, if any.
    pub async fn latest_run(&self) -> Result<Option<Run>> {
        self.hold(|_| async move {
            sqlx::query(concat!("SELECT ", run_columns!(), " FROM runs ORDER BY created_ms DESC, id DESC LIMIT 1"))
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(run_from_row)
                .transpose()
        })
        .await
    }

    /// Sets run `id`'s state if its generation is still `generation`; returns the new
    /// generation. `finished` and `aborted` also set its finish time.
    pub async fn set_run_state(&self, id: &str, generation: i64, state: RunState) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, id).await?;
            let done = sqlx::query(
                "UPDATE runs SET state = $3, finished_ms = $4, updated_ms = $5, \
                 generation = generation + 1 WHERE id = $1 AND generation = $2",
            )
            .bind(id)
            .bind(generation)
            .bind(state.name())
            .bind(state.is_ended().then_some(now))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(run_conflict(&mut tx, id, generation).await);
            }
            insert_event(&mut tx, id, None, now, EventKind::Run, state.name(), None).await?;
            tx.commit().await?;
            Ok(generation + 1)
        })
        .await
    }

    /// Takes the lease on run `id` for `owner` (e.g. `host:pid`) if its generation is
    /// still `generation`; returns the new generation. The caller decides beforehand
    /// whether a previous owner is gone (see [`Run::heartbeat_ms`]). Like
    /// [`Journal::claim_lease`], it bumps the run's lease epoch and fences this handle's
    /// later writes to the run.
    pub async fn claim(&self, id: &str, generation: i64, owner: &str) -> Result<i64> {
        Ok(self.claim_at(id, generation, None, owner).await?.1)
    }

    /// Takes the lease on run `seen` for `owner` (`host:pid`), if the run has not changed
    /// since it was read as `seen`. The caller decides beforehand, from `seen`, that no
    /// other process holds it (its owner is gone or silent). When another process claimed
    /// the run since: [`JournalError::LeaseHeld`] naming it; when the run changed otherwise
    /// (an abort request): [`JournalError::Conflict`], to read it again and decide again.
    ///
    /// The run's lease epoch is bumped: whoever held the lease before has its writes to the
    /// run refused from now on, and this handle's (and its clones') are checked against the
    /// new epoch.
    pub async fn claim_lease(&self, seen: &Run, owner: &str) -> Result<Lease> {
        let (epoch, _) = self.claim_at(&seen.id, seen.generation, Some(seen.owner.as_deref()), owner).await?;
        Ok(Lease { journal: self.clone(), run: seen.id.clone(), owner: owner.to_owned(), epoch })
    }

    /// The lease this handle (or a clone) claimed on run `id`, if any; it may have been
    /// lost since ([`Lease::keep`] says).
    pub fn lease(&self, id: &str) -> Option<Lease> {
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.get(id).map(|(epoch, owner)| Lease {
            journal: self.clone(),
            run: id.to_owned(),
            owner: owner.clone(),
            epoch: *epoch,
        })
    }

    /// A claim: (epoch, generation). `seen_owner`, the owner the caller read with
    /// `generation` when it knows it, tells a lost race (another owner now) from another
    /// change.
    async fn claim_at(
        &self,
        id: &str,
        generation: i64,
        seen_owner: Option<Option<&str>>,
        owner: &str,
    ) -> Result<(i64, i64)> {
        let epoch = self
            .hold(|now| async move {
                let mut tx = self.begin_write().await?;
                let epoch: Option<i64> = sqlx::query_scalar(
                    "UPDATE runs SET owner = $3, heartbeat_ms = $4, updated_ms = $4, \
                     lease_epoch = lease_epoch + 1, generation = generation + 1 \
                     WHERE id = $1 AND generation = $2 RETURNING lease_epoch",
                )
                .bind(id)
                .bind(generation)
                .bind(owner)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(epoch) = epoch else {
                    let current: Option<Option<String>> = sqlx::query_scalar("SELECT owner FROM runs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match (current, seen_owner) {
                        (None, _) => JournalError::RunNotFound { run: id.to_owned() },
                        // Someone else claimed it since the caller read it.
                        (Some(Some(holder)), Some(seen)) if holder != owner && seen != Some(holder.as_str()) => {
                            JournalError::LeaseHeld { run: id.to_owned(), holder }
                        }
                        _ => run_conflict(&mut tx, id, generation).await,
                    });
                };
                let message = format!("claimed by {owner} (lease {epoch})");
                insert_event(&mut tx, id, None, now, EventKind::Run, &message, None).await?;
                tx.commit().await?;
                Ok(epoch)
            })
            .await?;
        self.leases.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), (epoch, owner.to_owned()));
        Ok((epoch, generation + 1))
    }

    /// Records that `owner` still holds run `id`. Not a state change: the generation
    /// stays. Returns false when `owner` no longer holds it.
    pub async fn heartbeat(&self, id: &str, owner: &str) -> Result<bool> {
        self.hold(|now| async move {
            let done = sqlx::query("UPDATE runs SET heartbeat_ms = $3 WHERE id = $1 AND owner = $2")
                .bind(id)
                .bind(owner)
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    /// [`Lease::keep`]: the heartbeat of `lease`'s holder, written only while its epoch is
    /// the run's.
    pub(crate) async fn keep_lease(&self, lease: &Lease) -> Result<()> {
        self.hold(|now| async move {
            let mut conn = self.pool.acquire().await?;
            let done =
                sqlx::query("UPDATE runs SET heartbeat_ms = $4 WHERE id = $1 AND owner = $2 AND lease_epoch = $3")
                    .bind(&lease.run)
                    .bind(&lease.owner)
                    .bind(lease.epoch)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
            if done.rows_affected() == 1 {
                Ok(())
            } else {
                Err(lease_lost(&mut conn, &lease.run).await)
            }
        })
        .await
    }

    /// Checks, inside the write transaction `conn`, that this handle still holds run
    /// `run`'s lease when it claimed one. The no-op update is the check: on PostgreSQL it
    /// also locks the run's row until the transaction ends, so no claim slips in between
    /// the check and the write (SQLite's `BEGIN IMMEDIATE` already excludes every writer).
    async fn fence(&self, conn: &mut AnyConnection, run: &str) -> Result<()> {
        let epoch = self.leases.lock().unwrap_or_else(|p| p.into_inner()).get(run).map(|(epoch, _)| *epoch);
        let Some(epoch) = epoch else { return Ok(()) };
        let done = sqlx::query("UPDATE runs SET lease_epoch = lease_epoch WHERE id = $1 AND lease_epoch = $2")
            .bind(run)
            .bind(epoch)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            return Err(lease_lost(conn, run).await);
        }
        Ok(())
    }

    /// Asks run `id` to stop (`ferry abort`, from any process). Returns false when it was
    /// already asked. Bumps the run's generation, so that the process running it cannot
    /// finish it without having seen the request.
    pub async fn request_abort(&self, id: &str) -> Result<bool> {
        self.flag_abort(id, false).await
    }

    /// Asks the process still holding run `id`, whose moves have ended, to stop what follows
    /// them (a drain's hook or return): the same flag as [`Journal::request_abort`], set
    /// without bumping the generation, since the run's state is final already. Returns false
    /// when it was already asked; refuses a run that has not ended (abort that instead).
    pub async fn request_abort_after_moves(&self, id: &str) -> Result<bool> {
        self.flag_abort(id, true).await
    }

    /// Sets run `id`'s abort flag: before its end (bumping its generation), or `after_moves`.
    async fn flag_abort(&self, id: &str, after_moves: bool) -> Result<bool> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            let state = run_state(&mut tx, id).await?;
            match (after_moves, state.is_ended()) {
                (false, true) => return Err(JournalError::RunEnded { run: id.to_owned(), state }),
                (true, false) => return Err(JournalError::RunNotEnded { run: id.to_owned(), state }),
                _ => {}
            }
            let (update, text) = if after_moves {
                (
                    "UPDATE runs SET abort_requested = 1, updated_ms = $2 WHERE id = $1 AND abort_requested = 0",
                    "abort requested after the moves ended: stops the hook or return that follows them",
                )
            } else {
                (
                    "UPDATE runs SET abort_requested = 1, updated_ms = $2, generation = generation + 1 \
                     WHERE id = $1 AND abort_requested = 0",
                    "abort requested",
                )
            };
            let done = sqlx::query(update).bind(id).bind(now).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            insert_event(&mut tx, id, None, now, EventKind::Abort, text, None).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    /// Whether run `id` was asked to stop. Cheap enough to poll every second.
    pub async fn abort_requested(&self, id: &str) -> Result<bool> {
        self.hold(|_| async move {
            let flag: Option<i64> = sqlx::query_scalar("SELECT abort_requested FROM runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            match flag {
                Some(flag) => Ok(flag != 0),
                None => Err(JournalError::RunNotFound { run: id.to_owned() }),
            }
        })
        .await
    }

    // ---------------------------------------------------------------- moves

    /// Adds moves to run `run`, all or none, each at generation [`FIRST_GENERATION`].
    pub async fn add_moves(&self, run: &str, moves: &[NewMove]) -> Result<()> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let exists: Option<String> =
                sqlx::query_scalar("SELECT id FROM runs WHERE id = $1").bind(run).fetch_optional(&mut *tx).await?;
            if exists.is_none() {
                return Err(JournalError::RunNotFound { run: run.to_owned() });
            }
            for m in moves {
                let inserted = sqlx::query(
                    "INSERT INTO moves (run, uuid, vm, source, target, group_name, seq, priority, \
                     status, phase, phase_done, message, started_ms, ended_ms, updated_ms, generation) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, 0, $10, NULL, $11, $12, $13)",
                )
                .bind(run)
                .bind(&m.uuid)
                .bind(&m.vm)
                .bind(&m.source)
                .bind(m.target.as_deref())
                .bind(m.group.as_deref())
                .bind(m.seq)
                .bind(m.priority)
                .bind(m.status.name())
                .bind(&m.message)
                .bind(m.status.is_terminal().then_some(now))
                .bind(now)
                .bind(FIRST_GENERATION)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(sqlx::Error::Database(e)) if e.kind() == ErrorKind::UniqueViolation => {
                        return Err(JournalError::DuplicateMove { run: run.to_owned(), uuid: m.uuid.clone() });
                    }
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
            }
            let message = format!("{} moves added", moves.len());
            insert_event(&mut tx, run, None, now, EventKind::Run, &message, None).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Run `run`'s moves in plan order (empty for an unknown run).
    pub async fn moves(&self, run: &str) -> Result<Vec<Move>> {
        self.hold(|_| async move {
            sqlx::query(concat!("SELECT ", move_columns!(), " FROM moves WHERE run = $1 ORDER BY seq, uuid"))
                .bind(run)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(move_from_row)
                .collect()
        })
        .await
    }

    /// The move of VM `uuid` in run `run`.
    pub async fn move_of(&self, run: &str, uuid: &str) -> Result<Move> {
        self.hold(|_| async move {
            let row = sqlx::query(concat!("SELECT ", move_columns!(), " FROM moves WHERE run = $1 AND uuid = $2"))
                .bind(run)
                .bind(uuid)
                .fetch_optional(&self.pool)
                .await?;
            match row {
                Some(row) => move_from_row(&row),
                None => Err(move_not_found(run, uuid)),
            }
        })
        .await
    }

    /// Writes that the move enters `phase`, *before* its side effect: until
    /// [`Journal::end_phase`] the side effect may or may not have happened. Returns the new
    /// generation.
    pub async fn begin_phase(&self, run: &str, uuid: &str, generation: i64, phase: Phase) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let done = sqlx::query(
                "UPDATE moves SET phase = $4, phase_done = 0, updated_ms = $5, \
                 generation = generation + 1 WHERE run = $1 AND uuid = $2 AND generation = $3",
            )
            .bind(run)
            .bind(uuid)
            .bind(generation)
            .bind(phase.name())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(move_conflict(&mut tx, run, uuid, generation).await);
            }
            let message = format!("{phase}: begun");
            let data = json!({ "phase": phase.name(), "done": false });
            insert_event(&mut tx, run, Some(uuid), now, EventKind::Phase, &message, Some(&data)).await?;
            tx.commit().await?;
            Ok(generation + 1)
        })
        .await
    }

    /// Confirms, *after* its side effect, that the move's current phase `phase` is done.
    /// Returns the new generation; [`JournalError::PhaseMismatch`] when the move is not in
    /// `phase` or it was already confirmed.
    pub async fn end_phase(&self, run: &str, uuid: &str, generation: i64, phase: Phase) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let done = sqlx::query(
                "UPDATE moves SET phase_done = 1, updated_ms = $5, generation = generation + 1 \
                 WHERE run = $1 AND uuid = $2 AND generation = $3 AND phase = $4 AND phase_done = 0",
            )
            .bind(run)
            .bind(uuid)
            .bind(generation)
            .bind(phase.name())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let row = sqlx::query("SELECT generation, phase, phase_done FROM moves WHERE run = $1 AND uuid = $2")
                    .bind(run)
                    .bind(uuid)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Err(move_not_found(run, uuid));
                };
                let found: i64 = row.try_get("generation")?;
                if found != generation {
                    return Err(move_conflict(&mut tx, run, uuid, generation).await);
                }
                let current: Option<String> = row.try_get("phase")?;
                let confirmed: i64 = row.try_get("phase_done")?;
                let found = match current {
                    None => "in no phase".to_owned(),
                    Some(p) if confirmed != 0 => format!("in {p}, already confirmed"),
                    Some(p) => format!("in {p}"),
                };
                return Err(JournalError::PhaseMismatch {
                    run: run.to_owned(),
                    uuid: uuid.to_owned(),
                    expected: phase,
                    found,
                });
            }
            let message = format!("{phase}: done");
            let data = json!({ "phase": phase.name(), "done": true });
            insert_event(&mut tx, run, Some(uuid), now, EventKind::Phase, &message, Some(&data)).await?;
            tx.commit().await?;
            Ok(generation + 1)
        })
        .await
    }

    /// Sets the move's status and message; returns the new generation. The first
    /// `MIGRATING` sets its start time; a terminal status sets its end time (a
    /// non-terminal one clears it, for a move re-queued by `resume`).
    pub async fn set_status(
        &self,
        run: &str,
        uuid: &str,
        generation: i64,
        status: Status,
        message: &str,
    ) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let done = sqlx::query(
                "UPDATE moves SET status = $4, message = $5, started_ms = COALESCE(started_ms, $6), \
                 ended_ms = $7, updated_ms = $8, generation = generation + 1 \
                 WHERE run = $1 AND uuid = $2 AND generation = $3",
            )
            .bind(run)
            .bind(uuid)
            .bind(generation)
            .bind(status.name())
            .bind(message)
            .bind((status == Status::Migrating).then_some(now))
            .bind(status.is_terminal().then_some(now))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(move_conflict(&mut tx, run, uuid, generation).await);
            }
            let text = if message.is_empty() { status.name().to_owned() } else { format!("{status}: {message}") };
            let data = json!({ "status": status.name() });
            insert_event(&mut tx, run, Some(uuid), now, EventKind::Status, &text, Some(&data)).await?;
            tx.commit().await?;
            Ok(generation + 1)
        })
        .await
    }

    /// Sets the move's target host (placement of `ANY`, when the move starts); returns
    /// the new generation.
    pub async fn set_target(&self, run: &str, uuid: &str, generation: i64, target: &str) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let done = sqlx::query(
                "UPDATE moves SET target = $4, updated_ms = $5, generation = generation + 1 \
                 WHERE run = $1 AND uuid = $2 AND generation = $3",
            )
            .bind(run)
            .bind(uuid)
            .bind(generation)
            .bind(target)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(move_conflict(&mut tx, run, uuid, generation).await);
            }
            let message = format!("target {target}");
            let data = json!({ "target": target });
            insert_event(&mut tx, run, Some(uuid), now, EventKind::Target, &message, Some(&data)).await?;
            tx.commit().await?;
            Ok(generation + 1)
        })
        .await
    }

    // ---------------------------------------------------------------- attempts

    /// Records that an attempt at moving VM `uuid` starts; returns its number (1, 2, …).
    pub async fn record_attempt_start(&self, run: &str, uuid: &str, attempt: &NewAttempt) -> Result<u32> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM attempts WHERE run = $1 AND uuid = $2")
                .bind(run)
                .bind(uuid)
                .fetch_one(&mut *tx)
                .await?;
            let number = last.unwrap_or(0) + 1;
            let inserted = sqlx::query(
                "INSERT INTO attempts (run, uuid, number, kind, target, started_ms, ended_ms, outcome, \
                 message, wall_ms, job_ms, downtime_ms, bytes, passes, estimate, compression) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, '', NULL, NULL, NULL, NULL, NULL, $7, $8)",
            )
            .bind(run)
            .bind(uuid)
            .bind(number)
            .bind(attempt.kind.name())
            .bind(&attempt.target)
            .bind(now)
            .bind(attempt.estimate.as_ref().map(Value::to_string))
            .bind(attempt.compression.filter(|c| *c != Compression::None).map(Compression::name))
            .execute(&mut *tx)
            .await;
            match inserted {
                Err(sqlx::Error::Database(e)) if e.kind() == ErrorKind::ForeignKeyViolation => {
                    return Err(move_not_found(run, uuid));
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
            let message = format!("attempt {number} ({}) to {} started", attempt.kind, attempt.target);
            let data = json!({ "number": number, "kind": attempt.kind.name(), "target": attempt.target });
            insert_event(&mut tx, run, Some(uuid), now, EventKind::Attempt, &message, Some(&data)).await?;
            tx.commit().await?;
            Ok(u32::try_from(number).unwrap_or(u32::MAX))
        })
        .await
    }

    /// Records how attempt `number` of VM `uuid` ended, with its figures.
    pub async fn record_attempt_end(&self, run: &str, uuid: &str, number: u32, end: &AttemptEnd) -> Result<()> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let done = sqlx::query(
                "UPDATE attempts SET ended_ms = $4, outcome = $5, message = $6, \
                 wall_ms = COALESCE($7, $4 - started_ms), job_ms = $8, downtime_ms = $9, bytes = $10, \
                 passes = $11, memory_bytes = $12, memory_sent_bytes = $13 \
                 WHERE run = $1 AND uuid = $2 AND number = $3 AND ended_ms IS NULL",
            )
            .bind(run)
            .bind(uuid)
            .bind(i64::from(number))
            .bind(now)
            .bind(end.outcome.name())
            .bind(&end.message)
            .bind(end.wall_ms.map(saturating_i64))
            .bind(end.job_ms.map(saturating_i64))
            .bind(end.downtime_ms.map(saturating_i64))
            .bind(end.bytes.map(saturating_i64))
            .bind(end.passes.map(i64::from))
            .bind(end.memory_bytes.map(saturating_i64))
            .bind(end.memory_sent_bytes.map(saturating_i64))
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT number FROM attempts WHERE run = $1 AND uuid = $2 AND number = $3")
                        .bind(run)
                        .bind(uuid)
                        .bind(i64::from(number))
                        .fetch_optional(&mut *tx)
                        .await?;
                let (run, uuid) = (run.to_owned(), uuid.to_owned());
                return Err(match exists {
                    Some(_) => JournalError::AttemptEnded { run, uuid, number },
                    None => JournalError::AttemptNotFound { run, uuid, number },
                });
            }
            let mut message = format!("attempt {number}: {}", end.outcome);
            if !end.message.is_empty() {
                message = format!("{message}: {}", end.message);
            }
            let data = json!({
                "number": number,
                "outcome": end.outcome.name(),
                "wall_ms": end.wall_ms,
                "job_ms": end.job_ms,
                "downtime_ms": end.downtime_ms,
                "bytes": end.bytes,
                "passes": end.passes,
                "memory_bytes": end.memory_bytes,
                "memory_sent_bytes": end.memory_sent_bytes,
            });
            insert_event(&mut tx, run, Some(uuid), now, EventKind::Attempt, &message, Some(&data)).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Run `run`'s attempts, in the order they started.
    pub async fn attempts(&self, run: &str) -> Result<Vec<Attempt>> {
        self.hold(|_| async move {
            sqlx::query(concat!(
                "SELECT ",
                attempt_columns!(),
                " FROM attempts WHERE run = $1 ORDER BY started_ms, uuid, number"
            ))
            .bind(run)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(attempt_from_row)
            .collect()
        })
        .await
    }

    /// VM `uuid`'s latest finished attempt, in any run, whose stream was compressed and whose
    /// memory figures were recorded: what the next preview expects its memory to compress to.
    pub async fn last_compressed_attempt(&self, uuid: &str) -> Result<Option<Attempt>> {
        self.last_attempt_carrying_memory(uuid, last_attempt_sql!("compression IS NOT NULL")).await
    }

    /// VM `uuid`'s latest successful live attempt, in any run, whose memory figures were
    /// recorded: how much of its memory the next preview expects to carry.
    pub async fn last_live_attempt(&self, uuid: &str) -> Result<Option<Attempt>> {
        self.last_attempt_carrying_memory(uuid, last_attempt_sql!("kind = 'live' AND outcome = 'SUCCESS'")).await
    }

    /// The attempt `sql` ([`last_attempt_sql`]) finds for `uuid`.
    async fn last_attempt_carrying_memory(&self, uuid: &str, sql: &'static str) -> Result<Option<Attempt>> {
        self.hold(|_| async move {
            sqlx::query(sql).bind(uuid).fetch_optional(&self.pool).await?.as_ref().map(attempt_from_row).transpose()
        })
        .await
    }

    // ---------------------------------------------------------------- events

    /// Appends an event to run `run` (about VM `uuid`, or the run itself); returns its id.
    /// Per-VM messages and convergence decisions go here.
    pub async fn event(
        &self,
        run: &str,
        uuid: Option<&str>,
        kind: EventKind,
        message: &str,
        data: Option<&Value>,
    ) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            let inserted = insert_event(&mut tx, run, uuid, now, kind, message, data).await;
            let id = inserted.map_err(|e| unknown_event_owner(e, run, uuid))?;
            tx.commit().await?;
            Ok(id)
        })
        .await
    }

    /// Appends an event as [`Journal::event`] does, but only while this handle still holds
    /// run `run`'s lease (when it claimed one): the intent of a step that changes a host, which
    /// a process that lost its lease must neither record nor, so, do.
    pub(crate) async fn fenced_event(
        &self,
        run: &str,
        uuid: Option<&str>,
        kind: EventKind,
        message: &str,
        data: Option<&Value>,
    ) -> Result<i64> {
        self.hold(|now| async move {
            let mut tx = self.begin_write().await?;
            self.fence(&mut tx, run).await?;
            let inserted = insert_event(&mut tx, run, uuid, now, kind, message, data).await;
            let id = inserted.map_err(|e| unknown_event_owner(e, run, uuid))?;
            tx.commit().await?;
            Ok(id)
        })
        .await
    }

    /// Run `run`'s events, oldest first: all of them, or those about VM `uuid`.
    pub async fn events(&self, run: &str, uuid: Option<&str>) -> Result<Vec<Event>> {
        self.hold(|_| async move {
            let query = match uuid {
                Some(uuid) => sqlx::query(concat!(
                    "SELECT ",
                    event_columns!(),
                    " FROM events WHERE run = $1 AND uuid = $2 ORDER BY id"
                ))
                .bind(run)
                .bind(uuid),
                None => sqlx::query(concat!("SELECT ", event_columns!(), " FROM events WHERE run = $1 ORDER BY id"))
                    .bind(run),
            };
            // Each row made an event as it comes: a 10,000-VM run has 190,000 of them, and
            // the rows of all at once doubled the memory a report needs.
            let mut rows = query.fetch(&self.pool);
            let mut events = Vec::new();
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                events.push(event_from_row(&row)?);
            }
            Ok(events)
        })
        .await
    }

    /// Run `run`'s events after event `after` (an event id; 0 for the first), oldest first,
    /// at most `limit` of them: how a follower reads only what is new.
    pub async fn events_after(&self, run: &str, after: i64, limit: i64) -> Result<Vec<Event>> {
        self.hold(|_| async move {
            let rows = sqlx::query(concat!(
                "SELECT ",
                event_columns!(),
                " FROM events WHERE run = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(run)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(event_from_row).collect()
        })
        .await
    }
}

/// Appends an event. Its id is the journal's largest plus one, taken inside the inserting
/// statement: portable (no AUTOINCREMENT, no sequence), and unique because it is called
/// only inside a transaction of [`Journal::begin_write`], which writers take in turn.
async fn insert_event(
    conn: &mut AnyConnection,
    run: &str,
    uuid: Option<&str>,
    at_ms: i64,
    kind: EventKind,
    message: &str,
    data: Option<&Value>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO events (id, run, uuid, at_ms, kind, message, data) \
         VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM events), $1, $2, $3, $4, $5, $6) \
         RETURNING id",
    )
    .bind(run)
    .bind(uuid)
    .bind(at_ms)
    .bind(kind.name())
    .bind(message)
    .bind(data.map(Value::to_string))
    .fetch_one(conn)
    .await?)
}

/// An event's insert refused for its run or move: which one is not in the journal.
fn unknown_event_owner(e: JournalError, run: &str, uuid: Option<&str>) -> JournalError {
    match e {
        JournalError::Database(sqlx::Error::Database(db)) if db.kind() == ErrorKind::ForeignKeyViolation => {
            match uuid {
                Some(uuid) => move_not_found(run, uuid),
                None => JournalError::RunNotFound { run: run.to_owned() },
            }
        }
        other => other,
    }
}

/// The error for a failed compare-and-swap on a move, read inside the same transaction.
async fn move_conflict(conn: &mut AnyConnection, run: &str, uuid: &str, expected: i64) -> JournalError {
    let row = sqlx::query("SELECT vm, generation FROM moves WHERE run = $1 AND uuid = $2")
        .bind(run)
        .bind(uuid)
        .fetch_optional(conn)
        .await;
    let row = match row {
        Ok(Some(row)) => row,
        Ok(None) => return move_not_found(run, uuid),
        Err(e) => return e.into(),
    };
    match (row.try_get::<String, _>("vm"), row.try_get::<i64, _>("generation")) {
        (Ok(vm), Ok(found)) => {
            JournalError::Conflict { record: format!("VM {vm} ({uuid}) in run {run}"), expected, found }
        }
        (Err(e), _) | (_, Err(e)) => e.into(),
    }
}

/// The error for a failed compare-and-swap on a run, read inside the same transaction.
async fn run_conflict(conn: &mut AnyConnection, id: &str, expected: i64) -> JournalError {
    let found: std::result::Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT generation FROM runs WHERE id = $1").bind(id).fetch_optional(conn).await;
    match found {
        Ok(Some(found)) => JournalError::Conflict { record: format!("run {id}"), expected, found },
        Ok(None) => JournalError::RunNotFound { run: id.to_owned() },
        Err(e) => e.into(),
    }
}

/// The error for a write or heartbeat of a lease no longer held: who holds it now.
async fn lease_lost(conn: &mut AnyConnection, run: &str) -> JournalError {
    let holder: std::result::Result<Option<Option<String>>, _> =
        sqlx::query_scalar("SELECT owner FROM runs WHERE id = $1").bind(run).fetch_optional(conn).await;
    match holder {
        Ok(Some(holder)) => {
            JournalError::LeaseLost { run: run.to_owned(), holder: holder.unwrap_or_else(|| "no process".to_owned()) }
        }
        Ok(None) => JournalError::RunNotFound { run: run.to_owned() },
        Err(e) => e.into(),
    }
}

fn move_not_found(run: &str, uuid: &str) -> JournalError {
    JournalError::MoveNotFound { run: run.to_owned(), uuid: uuid.to_owned() }
}

fn run_from_row(row: &AnyRow) -> Result<Run> {
    Ok(Run {
        id: row.try_get("id")?,
        plan_name: row.try_get("plan_name")?,
        kind: parse_text::<RunKind>(row.try_get("kind")?, "runs", "kind")?,
        parent: row.try_get("parent")?,
        state: parse_text(row.try_get("state")?, "runs", "state")?,
        abort_requested: row.try_get::<i64, _>("abort_requested")? != 0,
        owner: row.try_get("owner")?,
        heartbeat_ms: row.try_get("heartbeat_ms")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        generation: row.try_get("generation")?,
    })
}

fn move_from_row(row: &AnyRow) -> Result<Move> {
    let phase: Option<String> = row.try_get("phase")?;
    Ok(Move {
        run: row.try_get("run")?,
        uuid: row.try_get("uuid")?,
        vm: row.try_get("vm")?,
        source: row.try_get("source")?,
        target: row.try_get("target")?,
        group: row.try_get("group_name")?,
        seq: row.try_get("seq")?,
        priority: row.try_get("priority")?,
        status: parse_text::<Status>(row.try_get("status")?, "moves", "status")?,
        phase: phase.map(|p| parse_text::<Phase>(p, "moves", "phase")).transpose()?,
        phase_done: row.try_get::<i64, _>("phase_done")? != 0,
        message: row.try_get("message")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        generation: row.try_get("generation")?,
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<Attempt> {
    let outcome: Option<String> = row.try_get("outcome")?;
    let estimate: Option<String> = row.try_get("estimate")?;
    let number: i64 = row.try_get("number")?;
    let passes: Option<i64> = row.try_get("passes")?;
    let compression: Option<String> = row.try_get("compression")?;
    Ok(Attempt {
        run: row.try_get("run")?,
        uuid: row.try_get("uuid")?,
        number: unsigned(number, "attempts", "number")?,
        kind: parse_text::<AttemptKind>(row.try_get("kind")?, "attempts", "kind")?,
        target: row.try_get("target")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        outcome: outcome.map(|o| parse_text::<Status>(o, "attempts", "outcome")).transpose()?,
        message: row.try_get("message")?,
        wall_ms: optional_unsigned(row.try_get("wall_ms")?, "attempts", "wall_ms")?,
        job_ms: optional_unsigned(row.try_get("job_ms")?, "attempts", "job_ms")?,
        downtime_ms: optional_unsigned(row.try_get("downtime_ms")?, "attempts", "downtime_ms")?,
        bytes: optional_unsigned(row.try_get("bytes")?, "attempts", "bytes")?,
        passes: optional_unsigned(passes, "attempts", "passes")?,
        estimate: estimate.map(|e| parse_json(e, "attempts", "estimate")).transpose()?,
        compression: compression.map(|c| parse_text::<Compression>(c, "attempts", "compression")).transpose()?,
        memory_bytes: optional_unsigned(row.try_get("memory_bytes")?, "attempts", "memory_bytes")?,
        memory_sent_bytes: optional_unsigned(row.try_get("memory_sent_bytes")?, "attempts", "memory_sent_bytes")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<Event> {
    let data: Option<String> = row.try_get("data")?;
    Ok(Event {
        id: row.try_get("id")?,
        run: row.try_get("run")?,
        uuid: row.try_get("uuid")?,
        at_ms: row.try_get("at_ms")?,
        kind: parse_text::<EventKind>(row.try_get("kind")?, "events", "kind")?,
        message: row.try_get("message")?,
        data: data.map(|d| parse_json(d, "events", "data")).transpose()?,
    })
}

fn parse_text<T: FromStr>(value: String, table: &'static str, column: &'static str) -> Result<T> {
    value.parse().map_err(|_| JournalError::Corrupt { table, column, value })
}

fn parse_json(value: String, table: &'static str, column: &'static str) -> Result<Value> {
    serde_json::from_str(&value).map_err(|_| JournalError::Corrupt { table, column, value })
}

fn unsigned<T: TryFrom<i64>>(value: i64, table: &'static str, column: &'static str) -> Result<T> {
    T::try_from(value).map_err(|_| JournalError::Corrupt { table, column, value: value.to_string() })
}

fn optional_unsigned<T: TryFrom<i64>>(
    value: Option<i64>,
    table: &'static str,
    column: &'static str,
) -> Result<Option<T>> {
    value.map(|v| unsigned(v, table, column)).transpose()
}

/// Figures are stored as BIGINT; none comes near 2^63, so saturating loses nothing real.
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Creates the journal's directory, and any missing above it, readable by its owner only
/// (0700): runs name hosts, VMs and hook output.
fn create_parent(file: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|cause| JournalError::CreateDir { path: PathBuf::from(dir), cause }),
        _ => Ok(()),
    }
}

/// Creates the journal file 0600 when it is new (SQLite then creates its `-wal` and `-shm`
/// files with the same mode), and takes group and other access away from an existing one
/// and its `-wal` and `-shm`, which older versions left 0644.
fn make_private(file: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let private = |path: &Path| -> std::io::Result<()> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                match std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o700))
                {
                    // Another user's journal, opened to read it: theirs to keep private.
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
                    other => other,
                }
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    };
    let created = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file);
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let sidecar = |suffix: &str| {
                let mut name = file.as_os_str().to_owned();
                name.push(suffix);
                private(Path::new(&name))
            };
            private(file).and_then(|()| sidecar("-wal")).and_then(|()| sidecar("-shm"))
        }
        Err(e) => Err(e),
    }
    .map_err(|cause| JournalError::Private { path: file.to_path_buf(), cause })
}

/// Whether an error is SQLite's "database is locked" (SQLITE_BUSY and its extended
/// codes), which a retry can cure.
fn is_busy(error: &JournalError) -> bool {
    let source = match error {
        JournalError::Open { cause, .. } | JournalError::Migrate { cause, .. } => cause,
        JournalError::Database(cause) => cause,
        _ => return false,
    };
    match source {
        sqlx::Error::Database(e) => e.code().and_then(|c| c.parse::<i64>().ok()).is_some_and(|code| code & 0xff == 5),
        _ => false,
    }
}

/// The options of a `postgres://` location, or [`JournalError::BadUrl`] when it is not a
/// URL with a host (nothing is connected to).
pub fn check_server_url(location: &str) -> Result<AnyConnectOptions> {
    let bad = || JournalError::BadUrl { location: redacted(location) };
    let options = AnyConnectOptions::from_str(location).map_err(|_| bad())?;
    let scheme = options.database_url.scheme();
    if !matches!(scheme, "postgres" | "postgresql") || options.database_url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(options)
}

/// Whether an error says the database server did not answer or went away (connection
/// refused or lost, the server shutting down or starting up, a pool with no connection to
/// give): what a retry after a pause can cure. SQLite's errors never are.
pub(crate) fn is_unreachable(error: &JournalError) -> bool {
    let JournalError::Database(cause) = error else { return false };
    match cause {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            // SQLSTATE class 08: connection exception; 57P01-57P03: admin or crash
            // shutdown, cannot connect now.
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// A location fit to print: a URL's password replaced by `***`.
pub(crate) fn redacted(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => location.to_owned(),
        // Not a URL: print no more of it than its scheme, it may hold a password.
        Err(_) => location.split_once("://").map_or_else(|| location.to_owned(), |(scheme, _)| format!("{scheme}://…")),
    }
}

/// Run `id`'s state, read in transaction `tx`.
async fn run_state(tx: &mut Transaction<'_, Any>, id: &str) -> Result<RunState> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM runs WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    match state {
        Some(state) => parse_text(state, "runs", "state"),
        None => Err(JournalError::RunNotFound { run: id.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_journal_its_wal_and_its_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
        let dir = std::env::temp_dir().join(format!("ferry-journal-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("state").join("journal.db");
        let journal = Journal::open_path(&path, &JournalConfig::default()).await.expect("a new journal");
        let new = crate::NewRun {
            plan_name: "p".into(),
            plan: json!({}),
            cluster: json!({}),
            kind: crate::RunKind::Migrate,
            parent: None,
        };
        journal.create_run(&new).await.expect("a write");
        let wal = dir.join("state").join("journal.db-wal");
        assert_eq!((mode(&dir.join("state")), mode(&path), mode(&wal)), (0o700, 0o600, 0o600));
        journal.close().await;

        // A journal an older ferry left readable by all is made private when opened.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let journal = Journal::open_path(&path, &JournalConfig::default()).await.expect("opens");
        journal.create_run(&new).await.expect("a write");
        assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600));
        journal.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_journal_at_its_schema_opens_while_another_holds_the_write_lock() {
        let dir = std::env::temp_dir().join(format!("ferry-journal-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("journal.db");
        let config = JournalConfig { busy_timeout: Duration::from_millis(300), ..JournalConfig::default() };
        let writer = Journal::open_path(&path, &config).await.expect("a new journal");
        // As a ferry stopped (SIGSTOP) inside one of its transactions leaves it.
        let held = writer.begin_write().await.expect("the write lock");
        let reader = Journal::open_path(&path, &config).await.expect("opens without the write lock");
        assert!(reader.runs().await.expect("reads").is_empty());
        let new = NewRun {
            plan_name: "p".into(),
            plan: serde_json::json!({}),
            cluster: serde_json::json!({}),
            kind: RunKind::Migrate,
            parent: None,
        };
        assert!(reader.create_run(&new).await.is_err(), "a write waits for the lock, then fails");
        drop(held);
        assert!(reader.create_run(&new).await.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
