//! The dispatcher of one run: scheduler decisions in, tasks out, the journal in between.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ferry_driver::{Driver, MoveReport, Progress};
use ferry_journal::{AttemptKind, EventKind, Journal, JournalError, Lease, NewAttempt, RunKind, RunState};
use ferry_model::{choose_stream, AutoFacts, ClusterSpec, Inventory, Status, StreamMode};
use ferry_plan::{Limits, Policy, Target};
use ferry_preview::placement::{self, Constraints, Fixed, Placer};
use ferry_preview::schedule::place_as_it_starts;
use ferry_scheduler::{Config, Deadline, Item, Scheduler, View};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use ferry_document::{Manual, MoveSpec};

use crate::clock::Clock;
use crate::task::{self, Channels, TaskControl, TaskDone, TaskInput, TaskSignal};

/// Everything about a run but its moves.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The run's id in the journal.
    pub run_id: String,
    /// Who runs it (`host:pid`): the journal lease's owner.
    pub owner: String,
    /// How moves run.
    pub policy: Policy,
    /// Concurrency limits.
    pub limits: Limits,
    /// No move starts after this instant (Unix seconds).
    pub deadline: Option<i64>,
    /// Each VM's status in the run this one resumes from.
    pub resume_from: Option<HashMap<String, Status>>,
    /// Hosts that are never targets (those being drained).
    pub unavailable: Vec<String>,
    /// For one-off moves (`ferry move`): what the operator set by hand instead of the plan.
    pub manual: Manual,
}

/// What the operator asks of a running run (Ctrl-C once, twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start nothing new; let running moves finish.
    Stop,
    /// Cancel running migrations too: their VMs stay on their sources.
    Abort,
}

/// What happens, for whoever shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// A move started.
    Started {
        /// VM name.
        vm: String,
        /// Source host.
        from: String,
        /// Target host.
        to: String,
        /// Live or cold.
        kind: AttemptKind,
    },
    /// A move entered a phase (journaled just before).
    Phase {
        /// VM name.
        vm: String,
        /// The phase.
        phase: ferry_model::Phase,
    },
    /// A progress sample of a live migration.
    Sample {
        /// VM name.
        vm: String,
        /// The sample.
        progress: Progress,
    },
    /// A move ended (or the scheduler ended it without starting it).
    Finished {
        /// VM name.
        vm: String,
        /// Its final status.
        status: Status,
        /// Why, in words.
        message: String,
    },
    /// Something about the run as a whole.
    Note(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// `finished`, or `aborted` when the operator stopped or aborted it.
    pub state: RunState,
    /// Every move, in plan order.
    pub moves: Vec<MoveEnd>,
}

/// How one move ended.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveEnd {
    /// VM name.
    pub vm: String,
    /// Final status.
    pub status: Status,
    /// Why, in words.
    pub message: String,
    /// The figures of its attempt in this process, if it ran here.
    pub report: Option<MoveReport>,
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal refused a write or a read: the run stops where the journal says.
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The journal and the moves given do not match.
    #[error("{0}")]
    Inconsistent(String),
}

impl EngineError {
    /// Whether the journal stopped answering (a database server gone for longer than the
    /// journal retries).
    pub fn journal_unreachable(&self) -> bool {
        matches!(self, EngineError::Journal(e) if e.is_unreachable())
    }

    /// Who holds the run now, when the error is that this process lost its lease.
    pub fn lost_to(&self) -> Option<&str> {
        match self {
            EngineError::Journal(JournalError::LeaseLost { holder, .. }) => Some(holder),
            _ => None,
        }
    }
}

/// The dispatcher of one run.
pub struct Engine<D> {
    driver: Arc<D>,
    journal: Journal,
    cluster: ClusterSpec,
    inventory: Inventory,
    settings: RunSettings,
    moves: Vec<MoveSpec>,
    clock: Clock,
    lease: Option<Lease>,
}

/// The journal's view of one move while the run goes on.
struct Record {
    generation: i64,
    target: Option<String>,
}

impl<D: Driver> Engine<D> {
    /// An engine for the run `settings.run_id`, whose moves are already in the journal
    /// (none of them in flight: after a crash, [`crate::reconcile`] first).
    pub fn new(
        driver: Arc<D>,
        journal: Journal,
        cluster: ClusterSpec,
        inventory: Inventory,
        settings: RunSettings,
        moves: Vec<MoveSpec>,
    ) -> Engine<D> {
        Engine { driver, journal, cluster, inventory, settings, moves, clock: Clock::system(), lease: None }
    }

    /// Runs under `lease`, the run's lease held by this process: kept every second, and
    /// the moment it is found lost (another process claimed the run), the engine starts
    /// nothing more and returns [`JournalError::LeaseLost`] naming the holder, leaving the
    /// migrations in flight to libvirt (not aborted: the new holder settles them). Its
    /// journal writes are fenced by the lease too, so a write after the loss fails the same
    /// way before its side effect. Without a lease the engine only writes the owner's
    /// heartbeat (a run nobody claimed has no lease to lose).
    pub fn with_lease(mut self, lease: Lease) -> Engine<D> {
        self.lease = Some(lease);
        self
    }

    /// Runs on `clock` instead of the wall clock (the simulator's virtual time).
    pub fn with_clock(mut self, clock: Clock) -> Engine<D> {
        self.clock = clock;
        self
    }

    /// Runs every move to its end. Returns when every move has a final status, or with an
    /// error when the journal fails or the lease is lost. Then the run stops where the journal says: migrations
    /// already in flight go on in libvirt (their moves are `MIGRATING` in the journal), and
    /// `ferry resume` settles them against what the hosts report, as after a crash.
    pub async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<EngineEvent>,
    ) -> Result<RunEnd, EngineError> {
        let run_id = self.settings.run_id.clone();
        if let Some(lease) = &self.lease {
            lease.keep().await?;
        }
        let kind = self.journal.run(&run_id).await?.kind;
        let journaled: HashMap<String, ferry_journal::Move> =
            self.journal.moves(&run_id).await?.into_iter().map(|m| (m.uuid.clone(), m)).collect();
        let mut records = Vec::with_capacity(self.moves.len());
        for spec in &self.moves {
            let m = journaled
                .get(&spec.uuid)
                .ok_or_else(|| EngineError::Inconsistent(format!("{} is not in run {run_id}", spec.vm)))?;
            if m.status == Status::Migrating {
                return Err(EngineError::Inconsistent(format!(
                    "{} is in flight in the journal: reconcile the run before running it",
                    spec.vm
                )));
            }
            records.push((m.status, Record { generation: m.generation, target: m.target.clone() }));
        }

        let mut scheduler = Scheduler::new(self.items(), self.config());
        let placer = Placer::new(&self.cluster, &self.inventory);
        for (i, (status, record)) in records.iter().enumerate() {
            if status.is_terminal() {
                let at = record.target.clone().unwrap_or_else(|| self.moves[i].from.clone());
                scheduler.adopt(i, &at);
                scheduler.finished(i, *status);
            }
        }
        let mut records: Vec<Record> = records.into_iter().map(|(_, r)| r).collect();
        let mut statuses: Vec<Status> = (0..self.moves.len()).map(|i| scheduler.status(i)).collect();
        let mut messages: Vec<String> = self.moves.iter().map(|m| journaled[&m.uuid].message.clone()).collect();
        let mut reports: Vec<Option<MoveReport>> = vec![None; self.moves.len()];

        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<TaskDone>();
        let (signal_tx, mut signal_rx) = mpsc::unbounded_channel::<TaskSignal>();
        // Ordered, so that an abort reaches the migrations in the same order every time (the
        // simulator replays a run exactly).
        let mut controls: BTreeMap<usize, mpsc::UnboundedSender<TaskControl>> = BTreeMap::new();
        let mut tasks = JoinSet::new();
        let mut stopped = false;
        let mut aborted = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle = IdleCpus::default();

        loop {
            let decisions =
                scheduler.decide(self.clock.now(), |item, view| self.place(&placer, item, view, &records, &statuses));
            for ended in decisions.ended {
                let spec = &self.moves[ended.item];
                let record = &mut records[ended.item];
                record.generation = self
                    .journal
                    .set_status(&run_id, &spec.uuid, record.generation, ended.status, &ended.message)
                    .await?;
                statuses[ended.item] = ended.status;
                messages[ended.item] = ended.message.clone();
                let _ = events.send(EngineEvent::Finished {
                    vm: spec.vm.clone(),
                    status: ended.status,
                    message: ended.message,
                });
            }
            for start in decisions.starts {
                let spec = &self.moves[start.item];
                let kind = if spec.running && !spec.cold && self.settings.policy.mode != ferry_plan::Mode::Cold {
                    AttemptKind::Live
                } else {
                    AttemptKind::Cold
                };
                let record = &mut records[start.item];
                if record.target.as_deref() != Some(start.to.as_str()) {
                    record.generation =
                        self.journal.set_target(&run_id, &spec.uuid, record.generation, &start.to).await?;
                    record.target = Some(start.to.clone());
                }
                let message = format!("{kind} move {} -> {} started", spec.from, start.to);
                record.generation = self
                    .journal
                    .set_status(&run_id, &spec.uuid, record.generation, Status::Migrating, &message)
                    .await?;
                let pair = self.cluster.host(&spec.from).zip(self.cluster.host(&start.to));
                let bandwidth_mib_s = cap(start.bandwidth_mib_s, self.settings.manual.bandwidth_mib_s);
                let (stream, chosen) = match (self.settings.policy.transport, pair) {
                    (StreamMode::Auto, Some((from, to))) if kind == AttemptKind::Live => {
                        let idle = idle.of(&*self.driver, &from.name, self.clock.now()).await;
                        let facts = AutoFacts::new(from, bandwidth_mib_s, idle);
                        let choice = choose_stream(self.settings.policy.auto_stream_between(from, to), &facts);
                        (choice.options, Some(choice.why))
                    }
                    (_, Some((from, to))) => (self.settings.policy.stream_between(from, to), None),
                    (_, None) => (self.settings.policy.stream, None),
                };
                let attempt = NewAttempt {
                    kind,
                    target: start.to.clone(),
                    estimate: spec.estimate.clone(),
                    compression: crate::task::compression_of(kind, &stream),
                };
                let attempt = self.journal.record_attempt_start(&run_id, &spec.uuid, &attempt).await?;
                if let Some(why) = chosen {
                    let text = format!("transport auto: {why}");
                    let data = serde_json::json!({ "transport": "auto", "stream": stream });
                    self.journal.event(&run_id, Some(&spec.uuid), EventKind::Decision, &text, Some(&data)).await?;
                    let _ = events.send(EngineEvent::Note(format!("{}: {text}", spec.vm)));
                }
                statuses[start.item] = Status::Migrating;
                let _ = events.send(EngineEvent::Started {
                    vm: spec.vm.clone(),
                    from: spec.from.clone(),
                    to: start.to.clone(),
                    kind,
                });
                let (control_tx, control_rx) = mpsc::unbounded_channel();
                if aborted {
                    let _ = control_tx.send(TaskControl::Abort);
                }
                controls.insert(start.item, control_tx);
                let input = TaskInput {
                    item: start.item,
                    run_id: run_id.clone(),
                    spec: spec.clone(),
                    to: start.to,
                    kind,
                    attempt,
                    bandwidth_mib_s,
                    max_downtime_ms: self.settings.manual.max_downtime_ms,
                    completion_timeout: self.settings.manual.completion_timeout,
                    policy: self.settings.policy.clone(),
                    tls: pair.is_some_and(|(from, to)| self.settings.policy.tls_between(from, to)),
                    stream,
                    generation: record.generation,
                };
                let channels = Channels {
                    controls: control_rx,
                    signals: signal_tx.clone(),
                    done: done_tx.clone(),
                    events: events.clone(),
                };
                tasks.spawn(task::run(self.driver.clone(), self.journal.clone(), input, channels));
            }
            for retune in decisions.retunes {
                if let (Some(control), Some(b)) = (
                    controls.get(&retune.item),
                    cap(Some(retune.bandwidth_mib_s), self.settings.manual.bandwidth_mib_s),
                ) {
                    let _ = control.send(TaskControl::Bandwidth(b));
                }
            }
            if scheduler.is_done() && controls.is_empty() {
                break;
            }

            // Biased (in order), not tokio's random pick among ready branches: under the
            // simulator's virtual time several are often ready at once, and the same run
            // must take the same turns.
            tokio::select! {
                biased;
                done = done_rx.recv() => {
                    let Some(done) = done else { break };
                    let spec = &self.moves[done.item];
                    let record = &mut records[done.item];
                    controls.remove(&done.item);
                    let status = status_in(kind, done.status);
                    record.generation = self
                        .journal
                        .set_status(&run_id, &spec.uuid, done.generation, status, &done.message)
                        .await?;
                    statuses[done.item] = status;
                    messages[done.item] = done.message.clone();
                    reports[done.item] = Some(done.report);
                    scheduler.finished(done.item, status);
                    let _ = events.send(EngineEvent::Finished { vm: spec.vm.clone(), status, message: done.message });
                }
                Some(signal) = signal_rx.recv() => match signal {
                    TaskSignal::Sending(item, sending) => scheduler.set_sending(item, sending),
                    TaskSignal::SwitchedOver(item) => scheduler.switched_over(item),
                },
                command = commands.recv(), if !aborted => {
                    match command {
                        Some(Command::Stop) if !stopped => {
                            stopped = true;
                            scheduler.stop_starting();
                            let _ = events.send(EngineEvent::Note(
                                "stop requested: no new move starts; running moves finish (Ctrl-C again aborts them)".into(),
                            ));
                        }
                        Some(Command::Abort) => {
                            aborted = true;
                            self.abort_all(&mut scheduler, &controls, &events, "abort requested: running migrations are cancelled; their VMs stay on their sources").await;
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    // The lease says this process is alive; the abort flag is `ferry abort` from elsewhere.
                    match &self.lease {
                        Some(lease) => lease.keep().await?,
                        None => {
                            self.journal.heartbeat(&run_id, &self.settings.owner).await?;
                        }
                    }
                    if !aborted && self.journal.abort_requested(&run_id).await? {
                        aborted = true;
                        self.abort_all(&mut scheduler, &controls, &events, "`ferry abort` received: running migrations are cancelled; their VMs stay on their sources").await;
                    }
                }
            }
        }
        while tasks.join_next().await.is_some() {}

        let state = if aborted || stopped { RunState::Aborted } else { RunState::Finished };
        self.set_run_state(state).await?;
        let moves = self
            .moves
            .iter()
            .zip(statuses)
            .zip(messages.into_iter().zip(reports))
            .map(|((m, status), (message, report))| MoveEnd { vm: m.vm.clone(), status, message, report })
            .collect();
        Ok(RunEnd { state, moves })
    }

    async fn abort_all(
        &self,
        scheduler: &mut Scheduler,
        controls: &BTreeMap<usize, mpsc::UnboundedSender<TaskControl>>,
        events: &mpsc::UnboundedSender<EngineEvent>,
        note: &str,
    ) {
        scheduler.stop_starting();
        for control in controls.values() {
            let _ = control.send(TaskControl::Abort);
        }
        let _ = events.send(EngineEvent::Note(note.into()));
    }

    /// Writes the run's final state, re-reading its generation: `ferry abort` from another
    /// process bumps it meanwhile.
    async fn set_run_state(&self, state: RunState) -> Result<(), EngineError> {
        loop {
            let run = self.journal.run(&self.settings.run_id).await?;
            match self.journal.set_run_state(&run.id, run.generation, state).await {
                Err(JournalError::Conflict { .. }) => continue,
                other => return other.map(|_| ()).map_err(Into::into),
            }
        }
    }

    fn items(&self) -> Vec<Item> {
        // Disks as the inventory saw them at the start.
        let disks: HashMap<&str, f64> =
            self.inventory.vms.iter().map(|v| (v.uuid.as_str(), v.local_disk_mib())).collect();
        self.moves
            .iter()
            .map(|m| Item {
                vm: m.vm.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                group: m.group.clone(),
                order: m.order,
                priority: m.priority,
                memory_mib: m.memory_mib,
                disk_mib: disks.get(m.uuid.as_str()).map_or(0, |d| d.round() as u64),
            })
            .collect()
    }

    fn config(&self) -> Config {
        Config {
            limits: self.settings.limits.clone(),
            links: self.cluster.hosts.iter().filter_map(|h| h.link_mib_s.map(|l| (h.name.clone(), l as f64))).collect(),
            deadline: self
                .settings
                .deadline
                .map(|at| Deadline { at: at as f64, shown: ferry_plan::time::format_rfc3339(at) }),
            resume_from: self.settings.resume_from.clone(),
        }
    }

    /// Places an `ANY` move against live capacity: every move in flight (as the scheduler
    /// sees it, including those started in this very decision) and every move that succeeded
    /// counts on its target, every pending move with a fixed target on that target.
    fn place(
        &self,
        placer: &Placer,
        item: &Item,
        view: &View,
        records: &[Record],
        statuses: &[Status],
    ) -> Option<String> {
        let mut fixed: Vec<Fixed> = view
            .running()
            .map(|(m, to)| Fixed { vm: m.vm.clone(), to: to.to_string(), anti_affinity: m.group.clone() })
            .collect();
        fixed.extend(
            self.moves
                .iter()
                .zip(records.iter().map(|r| &r.target).zip(statuses))
                .filter(|(m, _)| m.vm != item.vm)
                .filter_map(|(m, (target, status))| {
                    let to = match (status, target, &m.to) {
                        (s, Some(t), _) if s.is_success() => t.clone(),
                        (Status::Pending, _, Target::Host(h)) => h.clone(),
                        _ => return None,
                    };
                    Some(Fixed { vm: m.vm.clone(), to, anti_affinity: m.group.clone() })
                }),
        );
        let constraints = Constraints {
            allow_cross_group: self.settings.policy.allow_cross_group,
            unavailable: self.settings.unavailable.clone(),
            explain: false,
        };
        let policy = self.settings.policy.placement.parse().unwrap_or(placement::Policy::BestFit);
        place_as_it_starts(placer, &self.cluster, &fixed, item, view, &constraints, policy)
    }
}

/// A move's status in a run of `kind`: a rollback's moves that return their VM are
/// ROLLED-BACK, those that could not start or complete ROLLBACK-FAILED (the VM stays where
/// it is); FAILURE-LOST and ABORTED say more than ROLLBACK-FAILED and are kept.
pub(crate) fn status_in(kind: RunKind, status: Status) -> Status {
    match (kind, status) {
        (RunKind::Rollback, Status::Success | Status::SuccessCold) => Status::RolledBack,
        (RunKind::Rollback, Status::FailureInit | Status::FailureWait) => Status::RollbackFailed,
        _ => status,
    }
}

/// The lower of the link share and the operator's cap.
fn cap(share: Option<f64>, manual: Option<f64>) -> Option<f64> {
    match (share, manual) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Each source's idle cores, asked of the driver at most once per [`IdleCpus::FRESH_S`]: moves
/// that start together from one host share one reading.
#[derive(Default)]
struct IdleCpus {
    seen: HashMap<String, (f64, Result<f64, String>)>,
}

impl IdleCpus {
    const FRESH_S: f64 = 10.0;

    async fn of<D: Driver>(&mut self, driver: &D, host: &str, now: f64) -> Result<f64, String> {
        if let Some((at, idle)) = self.seen.get(host) {
            if now - at < Self::FRESH_S {
                return idle.clone();
            }
        }
        let idle = driver.idle_cpus(host).await.map_err(|e| e.to_string());
        self.seen.insert(host.to_string(), (now, idle.clone()));
        idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_run_names_its_outcomes() {
        let cases = [
            (RunKind::Rollback, Status::Success, Status::RolledBack),
            (RunKind::Rollback, Status::SuccessCold, Status::RolledBack),
            (RunKind::Rollback, Status::FailureInit, Status::RollbackFailed),
            (RunKind::Rollback, Status::FailureWait, Status::RollbackFailed),
            (RunKind::Rollback, Status::FailureLost, Status::FailureLost),
            (RunKind::Rollback, Status::Aborted, Status::Aborted),
            (RunKind::Migrate, Status::Success, Status::Success),
            (RunKind::Drain, Status::FailureWait, Status::FailureWait),
        ];
        for (kind, status, want) in cases {
            assert_eq!(status_in(kind, status), want, "{kind} {status}");
        }
    }
}
