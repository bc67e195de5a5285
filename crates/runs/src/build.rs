//! Building a run: one builder for a plan, a single move, a rollback and a drain's return.
//! What it builds is journaled in one go (the run, its document, its moves) before anything
//! is touched.

use std::collections::HashMap;

use ferry_document::{Manual, MoveSpec, RunDocument};
use ferry_engine::RunSettings;
use ferry_journal::{Journal, NewMove, NewRun, Run, RunKind};
use ferry_model::{ClusterSpec, Status};
use ferry_plan::{Hooks, Limits, Plan, PlannedMove, Policy, Target};

use crate::events::{Error, Event, Events};

/// A run about to be journaled.
#[derive(Debug, Clone)]
pub struct RunBuilder {
    plan: Plan,
    cluster: ClusterSpec,
    kind: RunKind,
    parent: Option<String>,
    unavailable: Vec<String>,
    manual: Manual,
    specs: Vec<MoveSpec>,
    moves: Vec<NewMove>,
    /// The preview's makespan, s.
    makespan_s: Option<f64>,
}

/// A run as journaled: its record and its document.
#[derive(Debug, Clone)]
pub struct Built {
    /// The run's record.
    pub run: Run,
    /// Its document.
    pub document: RunDocument,
    /// Its cluster.
    pub cluster: ClusterSpec,
}

impl Built {
    /// The engine's settings for this run, driven by `owner`.
    pub fn settings(&self, owner: String, resume_from: Option<HashMap<String, Status>>) -> RunSettings {
        settings(&self.run.id, owner, &self.document, resume_from)
    }
}

/// The engine's settings of run `run_id` from its document: everything it needs is there.
pub(crate) fn settings(
    run_id: &str,
    owner: String,
    document: &RunDocument,
    resume_from: Option<HashMap<String, Status>>,
) -> RunSettings {
    RunSettings {
        run_id: run_id.to_string(),
        owner,
        policy: document.plan.policy.clone(),
        limits: document.plan.limits.clone(),
        deadline: document.plan.deadline,
        resume_from,
        unavailable: document.unavailable.clone(),
        manual: document.manual.clone(),
    }
}

impl RunBuilder {
    /// A run of `plan` (`ferry migrate`, `ferry drain`): a drain's hosts are never targets.
    pub fn plan(plan: Plan, cluster: ClusterSpec) -> RunBuilder {
        let kind = if plan.drains.is_empty() { RunKind::Migrate } else { RunKind::Drain };
        let unavailable = plan.drains.iter().map(|d| d.host.clone()).collect();
        RunBuilder::new(plan, cluster, kind, unavailable)
    }

    /// A roll (`ferry roll`): no moves of its own; its waves are runs naming it as parent.
    pub fn roll(plan: Plan, cluster: ClusterSpec) -> RunBuilder {
        RunBuilder::new(plan, cluster, RunKind::Roll, Vec::new())
    }

    /// A run of one move (`ferry move`) with its hand-set options.
    pub fn single_move(spec: MoveSpec, policy: Policy, manual: Manual, cluster: ClusterSpec) -> RunBuilder {
        let to = match &spec.to {
            Target::Host(h) => h.clone(),
            Target::Any => "ANY".to_string(),
        };
        let plan = generated("ferry move", format!("move {} to {to}", spec.vm), policy, Limits::default(), &[&spec]);
        let mut builder = RunBuilder::new(plan, cluster, RunKind::Migrate, Vec::new());
        builder.manual = manual;
        builder.moving(spec, 0, Status::Pending, String::new());
        builder
    }

    /// A rollback of run `undoes` (`ferry rollback`, a drain's return): moves are added with
    /// [`RunBuilder::moving`] and those that cannot return with [`RunBuilder::refused`].
    pub fn rollback(
        undoes: &str,
        parent: Option<String>,
        policy: Policy,
        limits: Limits,
        cluster: ClusterSpec,
    ) -> RunBuilder {
        let plan = generated("ferry rollback", format!("rollback of {undoes}"), policy, limits, &[]);
        let mut builder = RunBuilder::new(plan, cluster, RunKind::Rollback, Vec::new());
        builder.parent = parent;
        builder
    }

    fn new(plan: Plan, cluster: ClusterSpec, kind: RunKind, unavailable: Vec<String>) -> RunBuilder {
        RunBuilder {
            plan,
            cluster,
            kind,
            parent: None,
            unavailable,
            manual: Manual::default(),
            specs: Vec::new(),
            moves: Vec::new(),
            makespan_s: None,
        }
    }

    /// Keeps the preview's makespan, s, in the run's document (the report's estimate).
    pub fn estimated_makespan(&mut self, seconds: f64) {
        self.makespan_s = Some(seconds).filter(|s| s.is_finite());
    }

    /// Makes the run part of run `parent` (a roll's wave).
    pub fn parent(&mut self, parent: Option<String>) {
        self.parent = parent;
    }

    /// Adds a move at `seq` with its first status: PENDING runs; another (a precheck that
    /// failed) is journaled with `message` and never starts.
    pub fn moving(&mut self, spec: MoveSpec, seq: usize, status: Status, message: String) {
        if self.kind == RunKind::Rollback && !self.plan.moves.iter().any(|m| m.vm == spec.vm) {
            self.plan.moves.push(planned(&spec));
        }
        self.moves.push(NewMove {
            vm: spec.vm.clone(),
            uuid: spec.uuid.clone(),
            source: spec.from.clone(),
            target: match &spec.to {
                Target::Host(h) => Some(h.clone()),
                Target::Any => None,
            },
            group: spec.group.clone(),
            seq: seq as i64,
            priority: spec.priority,
            status,
            message,
        });
        self.specs.push(spec);
    }

    /// Adds a move that cannot run, journaled with its final `status` and `message` (a VM
    /// a rollback finds nowhere, or twice).
    pub fn refused(&mut self, refused: NewMove) {
        self.moves.push(refused);
    }

    /// Journals the run, its document and its moves; tells [`Event::Created`].
    pub async fn create(self, journal: &Journal, events: &Events) -> Result<Built, Error> {
        let mut document = RunDocument::new(self.plan, self.specs, self.unavailable, self.manual);
        document.estimated_makespan_s = self.makespan_s;
        let stored = document.to_documents(&self.cluster).map_err(|e| Error::failed(&e))?;
        let new_run = NewRun {
            plan_name: document.plan.name.clone(),
            plan: stored.plan,
            cluster: stored.cluster,
            kind: self.kind,
            parent: self.parent.clone(),
        };
        let journal_error = |e: ferry_journal::JournalError| Error::Failed(format!("journal: {e}"));
        let run = journal.create_run(&new_run).await.map_err(journal_error)?;
        journal.add_moves(&run.id, &self.moves).await.map_err(journal_error)?;
        events.emit(Event::Created {
            run: run.id.clone(),
            kind: self.kind,
            parent: self.parent,
            moves: self.moves.len(),
            failing: self.moves.iter().filter(|m| m.status == Status::PrecheckFailed).count(),
        });
        Ok(Built { run, document, cluster: self.cluster })
    }
}

/// The plan of a run ferry makes itself (one move, a rollback): no file, no hooks.
fn generated(file: &str, name: String, policy: Policy, limits: Limits, moves: &[&MoveSpec]) -> Plan {
    Plan {
        file: file.into(),
        name,
        deadline: None,
        resume_from: None,
        limits,
        policy,
        moves: moves.iter().map(|s| planned(s)).collect(),
        drains: Vec::new(),
        hooks: Hooks::default(),
        roll: None,
    }
}

fn planned(spec: &MoveSpec) -> PlannedMove {
    PlannedMove {
        vm: spec.vm.clone(),
        to: spec.to.clone(),
        group: None,
        order: 0,
        priority: 0,
        line: 0,
        pre_hook: None,
        post_hook: None,
    }
}
