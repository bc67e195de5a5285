//! The journal's schema, as numbered migrations.
//!
//! Portable SQL only, so that PostgreSQL can take the same statements: types are TEXT
//! and BIGINT (every integer is BIGINT, so that one Rust type, i64, reads it on both:
//! sqlx's PostgreSQL driver does not decode a 4-byte INTEGER as i64); booleans are
//! BIGINT 0/1; JSON is TEXT; timestamps are milliseconds since the Unix epoch (UTC); no
//! AUTOINCREMENT, no `WITHOUT ROWID`, no STRICT, no SQLite pragmas. Event ids are assigned by the inserting statement
//! (`MAX(id) + 1`; see `journal.rs`), not by a SQLite rowid or a PostgreSQL sequence.
//! Column names avoid SQL keywords (`group_name`, `seq`, not `group`, `order`).
//!
//! A migration is never edited once released: a change is a new migration.

/// One step of the schema.
pub(crate) struct Migration {
    /// Its number in `schema_version`.
    pub(crate) version: i64,
    /// What it does, stored beside the number.
    pub(crate) description: &'static str,
    /// Statements, run in order in the same transaction as the version row.
    pub(crate) statements: &'static [&'static str],
}

/// Created before anything else, outside the numbered migrations.
pub(crate) const SCHEMA_VERSION_TABLE: &str = "\
CREATE TABLE IF NOT EXISTS schema_version (
    version     BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_ms  BIGINT NOT NULL
)";

/// Every migration, in order.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "runs, moves, attempts, events",
        statements: &[
            // One row per run. `plan` and `cluster` are the JSON documents the run started
            // from, so that resume, rollback and cleanup need no files. `owner` and
            // `heartbeat_ms` are the lease: who runs it, and when they last said so.
            "CREATE TABLE runs (
            id              TEXT PRIMARY KEY,
            plan_name       TEXT NOT NULL,
            plan            TEXT NOT NULL,
            cluster         TEXT NOT NULL,
            kind            TEXT NOT NULL,
            parent          TEXT REFERENCES runs (id),
            state           TEXT NOT NULL,
            abort_requested BIGINT NOT NULL,
            owner           TEXT,
            heartbeat_ms    BIGINT,
            created_ms      BIGINT NOT NULL,
            updated_ms      BIGINT NOT NULL,
            finished_ms     BIGINT,
            generation      BIGINT NOT NULL
        )",
            "CREATE INDEX runs_by_created ON runs (created_ms, id)",
            // One row per VM per run. `status` is a ferry_model::Status name, `phase` a
            // ferry_model::Phase name; `phase_done` is 0 from the moment a phase is written
            // (before its side effect) until it is confirmed (after it).
            "CREATE TABLE moves (
            run         TEXT NOT NULL REFERENCES runs (id),
            uuid        TEXT NOT NULL,
            vm          TEXT NOT NULL,
            source      TEXT NOT NULL,
            target      TEXT,
            group_name  TEXT,
            seq         BIGINT NOT NULL,
            priority    BIGINT NOT NULL,
            status      TEXT NOT NULL,
            phase       TEXT,
            phase_done  BIGINT NOT NULL,
            message     TEXT NOT NULL,
            started_ms  BIGINT,
            ended_ms    BIGINT,
            updated_ms  BIGINT NOT NULL,
            generation  BIGINT NOT NULL,
            PRIMARY KEY (run, uuid)
        )",
            // One row per try at moving a VM (a live attempt, then maybe a cold one).
            "CREATE TABLE attempts (
            run         TEXT NOT NULL,
            uuid        TEXT NOT NULL,
            number      BIGINT NOT NULL,
            kind        TEXT NOT NULL,
            target      TEXT NOT NULL,
            started_ms  BIGINT NOT NULL,
            ended_ms    BIGINT,
            outcome     TEXT,
            message     TEXT NOT NULL,
            wall_ms     BIGINT,
            job_ms      BIGINT,
            downtime_ms BIGINT,
            bytes       BIGINT,
            passes      BIGINT,
            estimate    TEXT,
            PRIMARY KEY (run, uuid, number),
            FOREIGN KEY (run, uuid) REFERENCES moves (run, uuid)
        )",
            // The history: every phase, status, target and attempt change, per-VM messages
            // and convergence decisions. `uuid` is NULL for the run's own events.
            "CREATE TABLE events (
            id      BIGINT PRIMARY KEY,
            run     TEXT NOT NULL REFERENCES runs (id),
            uuid    TEXT,
            at_ms   BIGINT NOT NULL,
            kind    TEXT NOT NULL,
            message TEXT NOT NULL,
            data    TEXT,
            FOREIGN KEY (run, uuid) REFERENCES moves (run, uuid)
        )",
            "CREATE INDEX events_by_run ON events (run, uuid, id)",
        ],
    },
    Migration {
        version: 2,
        description: "lease epochs",
        statements: &[
            // The fencing token of a run's lease: bumped by every claim, so that a process
            // which held an earlier lease (stopped, then continued) has its writes refused.
            "ALTER TABLE runs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0",
        ],
    },
    Migration {
        version: 3,
        description: "compression of attempts' streams",
        statements: &[
            // The stream's compression (a ferry_model::Compression name; NULL: none), the
            // guest memory the migration carried (normal pages' bytes) and the bytes it sent
            // for it: their ratio is what the next preview of the VM expects.
            "ALTER TABLE attempts ADD COLUMN compression TEXT",
            "ALTER TABLE attempts ADD COLUMN memory_bytes BIGINT",
            "ALTER TABLE attempts ADD COLUMN memory_sent_bytes BIGINT",
        ],
    },
];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}
