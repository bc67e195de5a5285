//! `ferry roll`: rolling maintenance, wave by wave.
//!
//! A roll is a run of its own (kind `roll`, no moves) whose waves are drain runs naming it
//! as their parent. Its waves are planned once (`ferry_roll::plan_roll`) and journaled
//! with the roll before anything starts; each wave is then one drain of its hosts, whose
//! hook, check and return [`crate::drain::after`] runs. A wave that does not end well
//! stops the roll (`on_host_failure = "stop"`: the host stays drained) or is passed over
//! (`"skip"`). After the canary waves the roll stops unless `--yes` said to go on: `ferry
//! resume ROLL` is the confirmation. Resume finds each wave's run by its name: a finished
//! wave is settled again (idempotent), an unfinished one resumed (a failed hook or check
//! runs again), and the waves never started start.
//!
//! `ferry abort ROLL` is passed on to the wave running (its migrations are cancelled, their
//! VMs stay on their sources; a hook it runs is stopped, and nothing returns) and the roll
//! starts no other wave. Past the plan's deadline no
//! new wave starts; a wave already started still finishes, its return included.

use std::time::Duration;

use ferry_driver::Driver;
use ferry_engine::Clock;
use ferry_journal::{EventKind, Journal, JournalError, Lease, Run, RunKind, RunState};
use ferry_model::Inventory;
use ferry_plan::{Check, Drain, Hooks, Maintenance, OnHostFailure, Plan, PlannedMove, Roll, Target};
use ferry_preview::checks::CheckName;
use ferry_preview::placement::Policy;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::{simulated, Cluster};
use crate::drivers::Session;
use crate::events::{Error, Events};
use crate::journals::JournalAt;
use crate::owners::{documents, find_run, owner, take_lease, Lost};
use crate::start::{self, JournalTo, Start, WaveOf};
use crate::RunBuilder;

/// A roll about to start.
pub struct RollStart {
    /// The plan, with its `[roll]` section.
    pub plan: Plan,
    /// The hosts.
    pub cluster: Cluster,
    /// Where the roll and its waves are journaled.
    pub journal: JournalAt,
    /// Checks whose failures are waived in every wave.
    pub ignore: Vec<CheckName>,
    /// Go on past the canary waves without stopping for a confirmation.
    pub yes: bool,
}

/// The waves as journaled when the roll was created: what resume goes through.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waves {
    /// Each wave's hosts, in order.
    hosts: Vec<Vec<String>>,
    /// How many waves are canaries.
    canaries: usize,
}

/// The event data's key of the journaled waves.
const WAVES: &str = "roll_waves";

/// How a roll ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolled {
    /// The roll's run.
    pub roll: String,
    /// Where it is.
    pub end: RollEnd,
}

/// Where a roll stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollEnd {
    /// Every wave ran; `true` when each ended well.
    Finished(bool),
    /// Stopped after its canary waves, waiting for `ferry resume ROLL`.
    AwaitingConfirmation,
    /// Stopped at this wave (1-based), which did not end well (`on_host_failure = "stop"`).
    Stopped(usize),
    /// Aborted by the operator (`ferry abort`) at this wave (1-based): during it, or before
    /// it started.
    Aborted(usize),
    /// The plan's deadline passed before this wave (1-based) could start.
    PastDeadline(usize),
}

/// Plans `start.plan`'s roll, journals it and runs it.
pub async fn roll(start: RollStart, events: &Events) -> Result<Rolled, Error> {
    let RollStart { plan, cluster, journal, ignore, yes } = start;
    let roll = plan.roll.clone().ok_or_else(|| {
        Error::BadInput(format!("{}: no [roll] section: `ferry migrate {}` runs this plan", plan.file, plan.file))
    })?;
    let spec = cluster.spec();
    let session = Session::new(&cluster);
    let inventory = session.driver.inventory().await;
    let planned =
        ferry_roll::plan_roll(&roll, &plan.file, &spec, &inventory, plan.limits.per_source, Policy::of_plan(&plan))
            .map_err(|errors| Error::BadInput(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))?;
    if !planned.impossible.is_empty() {
        let why: Vec<String> = planned.impossible.iter().map(|(h, why)| format!("{h}: {why}")).collect();
        return Err(Error::Failed(format!(
            "{}: the roll cannot be done as planned; nothing started ({}); `ferry preview {}` shows its waves",
            plan.file,
            why.join("; "),
            plan.file
        )));
    }
    let (_, journal_clock) = crate::drivers::clocks(&cluster);
    let journal = journal.open_with_clock(journal_clock).await?;
    let waves = Waves {
        hosts: planned.waves.iter().map(|w| w.hosts.clone()).collect(),
        canaries: planned.waves.iter().filter(|w| w.canary).count(),
    };
    let built = RunBuilder::roll(plan.clone(), spec.clone()).create(&journal, events).await?;
    let id = built.run.id.clone();
    let text =
        format!("{} waves of {} hosts; {} skipped", waves.hosts.len(), planned.hosts.len(), planned.skipped.len());
    let data = json!({ WAVES: waves, "skipped": planned.skipped });
    journal.event(&id, None, EventKind::Message, &text, Some(&data)).await.map_err(|e| Error::failed(&e))?;
    for (host, why) in &planned.skipped {
        note(&journal, &id, events, format!("{host} is left out of the roll: {why}")).await;
    }
    let lease = journal
        .claim_lease(&built.run, &owner())
        .await
        .map_err(|e| Error::Failed(format!("could not take run {id}: {e}")))?;
    // A simulated world lives in this process: a roll stopped for its confirmation could
    // never be resumed.
    let yes = yes || session.driver.is_sim();
    let ctx = Context { journal: &journal, lease: &lease, plan: &plan, roll: &roll, ignore, events, session };
    drive(&ctx, &cluster, &waves, yes).await
}

/// Resumes run `id`: a roll from where it stopped (its confirmation given), any other run
/// by [`start::resume`].
pub async fn resume(journal: &Journal, id: &str, hook_done: bool, events: &Events) -> Result<bool, Error> {
    let run = find_run(journal, id).await?;
    if run.kind != RunKind::Roll {
        return start::resume(journal, &run.id, hook_done, false, events).await;
    }
    let (document, spec) = documents(journal, &run.id).await?;
    let plan = document.plan;
    let roll = plan.roll.clone().ok_or_else(|| Error::Failed(format!("run {}: a roll without [roll]", run.id)))?;
    if run.state.is_ended() {
        events.say(format!("roll {} is already {}: nothing to resume", run.id, run.state));
        return Ok(run.state == RunState::Finished);
    }
    if simulated(&spec) {
        return Err(Error::BadInput(format!(
            "roll {} was simulated (--cluster sim:FILE): its world lived in the process that ran it; run the plan again",
            run.id
        )));
    }
    let waves = journaled_waves(journal, &run.id).await?;
    let lease = take_lease(journal, &run.id, &owner()).await?;
    events.say(format!("roll {} resumed", run.id));
    let cluster = Cluster::Hosts(spec);
    let session = Session::new(&cluster);
    let ctx = Context { journal, lease: &lease, plan: &plan, roll: &roll, ignore: Vec::new(), events, session };
    if run.state != RunState::Running {
        set_state(&ctx, RunState::Running).await?;
    }
    let rolled = drive(&ctx, &cluster, &waves, true).await?;
    Ok(rolled.end == RollEnd::Finished(true))
}

/// What every wave needs.
struct Context<'a> {
    journal: &'a Journal,
    lease: &'a Lease,
    plan: &'a Plan,
    roll: &'a Roll,
    ignore: Vec<CheckName>,
    events: &'a Events,
    /// The driver and clock every wave runs on.
    session: Session,
}

/// Runs the waves in order, each once: a wave whose run exists is settled or resumed.
async fn drive(ctx: &Context<'_>, cluster: &Cluster, waves: &Waves, confirmed: bool) -> Result<Rolled, Error> {
    // A wave takes as long as its drain, hook and return: the roll's lease is kept meanwhile,
    // so that another `ferry resume` of the roll finds it alive. (Not in a simulation: its
    // runs cannot be resumed or aborted, and its virtual clock runs on its events only.)
    let tasks = (!ctx.session.driver.is_sim()).then(|| {
        [
            tokio::spawn(crate::drain::keep(ctx.lease.clone())),
            tokio::spawn(forward_abort(ctx.journal.clone(), ctx.lease.run().to_string())),
        ]
    });
    let rolled = waves_in_order(ctx, cluster, waves, confirmed).await;
    for task in tasks.into_iter().flatten() {
        task.abort();
    }
    rolled
}

/// How often the roll looks for `ferry abort ROLL`.
const ABORT_POLL: Duration = Duration::from_secs(1);

/// Passes an abort of roll `roll` on to its waves not ended: the wave running cancels its
/// migrations (its engine reads its own run's flag) and skips its hook and return, its host
/// not empty. Until the roll ends: a wave created just as the abort came is caught too.
async fn forward_abort(journal: Journal, roll: String) {
    loop {
        tokio::time::sleep(ABORT_POLL).await;
        if !journal.abort_requested(&roll).await.unwrap_or(false) {
            continue;
        }
        for wave in journal.runs().await.unwrap_or_default() {
            if wave.parent.as_deref() == Some(roll.as_str())
                && !wave.state.is_ended()
                && !journal.abort_requested(&wave.id).await.unwrap_or(true)
            {
                let _ = journal.request_abort(&wave.id).await;
            }
        }
    }
}

async fn waves_in_order(ctx: &Context<'_>, cluster: &Cluster, waves: &Waves, confirmed: bool) -> Result<Rolled, Error> {
    let id = ctx.lease.run().to_string();
    let clock = ctx.session.clock;
    let mut ok = true;
    for (i, hosts) in waves.hosts.iter().enumerate() {
        keep(ctx.lease).await?;
        if abort_requested(ctx).await {
            return aborted(ctx, i + 1, "before it started").await;
        }
        let name = wave_name(&ctx.plan.name, i, hosts);
        let existing = wave_run(ctx.journal, &id, &name).await;
        if existing.is_none() && past_deadline(ctx.plan, &clock) {
            let text = format!(
                "the plan's deadline ({}) has passed: wave {} ({}) and those after it do not start",
                ctx.plan.deadline.map(ferry_plan::time::format_rfc3339).unwrap_or_default(),
                i + 1,
                hosts.join(", ")
            );
            note(ctx.journal, &id, ctx.events, text).await;
            set_state(ctx, RunState::Stopped).await?;
            return Ok(Rolled { roll: id, end: RollEnd::PastDeadline(i + 1) });
        }
        let wave_ok = match existing {
            Some(run) => {
                ctx.events.say(format!("wave {}: {}: run {} again", i + 1, hosts.join(", "), run.id));
                start::soft(Box::pin(start::resume(ctx.journal, &run.id, false, true, ctx.events)).await, ctx.events)?
            }
            None => {
                note(ctx.journal, &id, ctx.events, format!("wave {}: {}", i + 1, hosts.join(", "))).await;
                let inventory = ctx.session.driver.inventory().await;
                let start = Start {
                    plan: wave_plan(ctx.plan, ctx.roll, name, hosts, &inventory),
                    cluster: cluster.clone(),
                    journal: JournalTo::Open(ctx.journal.clone()),
                    ignore: ctx.ignore.clone(),
                    measure: false,
                    wave_of: Some(WaveOf { roll: id.clone(), session: ctx.session.clone() }),
                };
                start::soft(Box::pin(start::start(start, ctx.events)).await, ctx.events)?
            }
        };
        let text = format!(
            "wave {}: {}: {}",
            i + 1,
            hosts.join(", "),
            if wave_ok { "done" } else { "did not end well (see its run)" }
        );
        let verdict = json!({ "wave_verdict": { "wave": i + 1, "ended_well": wave_ok } });
        note_with(ctx.journal, &id, ctx.events, text, Some(&verdict)).await;
        if abort_requested(ctx).await {
            return aborted(ctx, i + 1, "while it ran").await;
        }
        if !wave_ok {
            ok = false;
            if ctx.roll.on_host_failure == OnHostFailure::Stop {
                note(
                    ctx.journal,
                    &id,
                    ctx.events,
                    format!(
                        "roll stopped at wave {} (on_host_failure = \"stop\"): its hosts stay drained; once fixed, \
                         `ferry resume {id}` runs the wave again and goes on",
                        i + 1
                    ),
                )
                .await;
                set_state(ctx, RunState::Stopped).await?;
                return Ok(Rolled { roll: id, end: RollEnd::Stopped(i + 1) });
            }
        }
        if !confirmed && i + 1 == waves.canaries && i + 1 < waves.hosts.len() {
            note(
                ctx.journal,
                &id,
                ctx.events,
                format!(
                    "canary done ({} waves): the roll waits for a confirmation; `ferry resume {id}` goes on",
                    waves.canaries
                ),
            )
            .await;
            set_state(ctx, RunState::Stopped).await?;
            return Ok(Rolled { roll: id, end: RollEnd::AwaitingConfirmation });
        }
    }
    if !ctx.roll.return_vms {
        let after = waves.hosts.len() + 1;
        keep(ctx.lease).await?;
        if abort_requested(ctx).await {
            return aborted(ctx, after, "before the rebalance").await;
        }
        let existing = wave_run(ctx.journal, &id, &rebalance_name(&ctx.plan.name)).await;
        if existing.is_none() && past_deadline(ctx.plan, &clock) {
            note(ctx.journal, &id, ctx.events, "the plan's deadline has passed: the rebalance does not start".into())
                .await;
            set_state(ctx, RunState::Stopped).await?;
            return Ok(Rolled { roll: id, end: RollEnd::PastDeadline(after) });
        }
        ok &= rebalance(ctx, cluster, waves, existing).await?;
        if abort_requested(ctx).await {
            return aborted(ctx, after, "during the rebalance").await;
        }
    }
    set_state(ctx, RunState::Finished).await?;
    Ok(Rolled { roll: id, end: RollEnd::Finished(ok) })
}

/// The rebalance's run name.
fn rebalance_name(plan: &str) -> String {
    format!("{plan}: rebalance")
}

/// The run that ends a roll without return: the roll's hosts evened out by the plan's
/// placement policy ([`ferry_roll::plan_rebalance`]) on the layout found now; `existing`,
/// its run when it was created, is resumed instead. Whether it ended well.
async fn rebalance(ctx: &Context<'_>, cluster: &Cluster, waves: &Waves, existing: Option<Run>) -> Result<bool, Error> {
    let id = ctx.lease.run();
    if let Some(run) = existing {
        ctx.events.say(format!("rebalance: run {} again", run.id));
        return Ok(start::soft(
            Box::pin(start::resume(ctx.journal, &run.id, false, true, ctx.events)).await,
            ctx.events,
        )?);
    }
    let inventory = ctx.session.driver.inventory().await;
    let hosts: Vec<String> = waves.hosts.iter().flatten().cloned().collect();
    let policy = Policy::of_plan(ctx.plan);
    let moves = ferry_roll::plan_rebalance(&cluster.spec(), &inventory, &hosts, policy);
    let text = format!("rebalance of the roll's hosts by placement {}: {} moves", policy.as_str(), moves.len());
    note(ctx.journal, id, ctx.events, text).await;
    if moves.is_empty() {
        return Ok(true);
    }
    let plan = Plan {
        name: rebalance_name(&ctx.plan.name),
        moves: moves
            .iter()
            .map(|m| PlannedMove {
                vm: m.vm.clone(),
                to: Target::Host(m.to.clone()),
                group: None,
                order: 0,
                priority: 0,
                line: ctx.roll.hosts_line.unwrap_or(0),
                pre_hook: None,
                post_hook: None,
            })
            .collect(),
        drains: Vec::new(),
        roll: None,
        resume_from: None,
        ..ctx.plan.clone()
    };
    let start = Start {
        plan,
        cluster: cluster.clone(),
        journal: JournalTo::Open(ctx.journal.clone()),
        ignore: ctx.ignore.clone(),
        measure: false,
        wave_of: Some(WaveOf { roll: id.to_string(), session: ctx.session.clone() }),
    };
    Ok(start::soft(Box::pin(start::start(start, ctx.events)).await, ctx.events)?)
}

async fn abort_requested(ctx: &Context<'_>) -> bool {
    ctx.journal.abort_requested(ctx.lease.run()).await.unwrap_or(false)
}

/// Ends the roll ABORTED at wave `wave` (1-based), saying `when` the abort came.
async fn aborted(ctx: &Context<'_>, wave: usize, when: &str) -> Result<Rolled, Error> {
    let id = ctx.lease.run().to_string();
    let text = format!(
        "roll aborted by the operator at wave {wave} ({when}): no other wave starts; the VMs its waves moved \
         and did not return stay where they went (`ferry rollback WAVE` returns them)"
    );
    note(ctx.journal, &id, ctx.events, text).await;
    set_state(ctx, RunState::Aborted).await?;
    Ok(Rolled { roll: id, end: RollEnd::Aborted(wave) })
}

/// Whether the plan's deadline has passed on the roll's clock.
fn past_deadline(plan: &Plan, clock: &Clock) -> bool {
    plan.deadline.is_some_and(|at| clock.now() >= at as f64)
}

/// The drain run of one wave: its hosts drained to `ANY`, each given the roll's hook and
/// check and, when the roll returns, its VMs back; per VM of its hosts as `inventory` finds
/// them there, `maintenance = "shutdown"` stays shut down, `"cold"` leaves cold. On a
/// simulated fleet the hook and check are not run: the hook takes `hook_sim_s`.
fn wave_plan(plan: &Plan, roll: &Roll, name: String, hosts: &[String], inventory: &Inventory) -> Plan {
    let check = roll.check.clone().map(|command| Check { command, timeout_s: roll.check_timeout_s });
    let behaving = |host: &str, behaviour| {
        inventory.vms_on(host).filter(|v| roll.behaviour_for(v) == behaviour).map(|v| v.name.clone()).collect()
    };
    Plan {
        file: plan.file.clone(),
        name,
        deadline: plan.deadline,
        resume_from: None,
        limits: plan.limits.clone(),
        policy: plan.policy.clone(),
        moves: Vec::new(),
        drains: hosts
            .iter()
            .map(|host| Drain {
                host: host.clone(),
                to: Target::Any,
                return_after: roll.return_vms,
                hook: roll.hook.clone(),
                check: check.clone(),
                shut_down: behaving(host, Maintenance::Shutdown),
                cold: behaving(host, Maintenance::Cold),
                hook_sim_s: Some(roll.hook_sim_s.unwrap_or(0.0)),
                line: roll.hosts_line.unwrap_or(0),
            })
            .collect(),
        hooks: Hooks { timeout_s: roll.hook_timeout_s.max(1), ..plan.hooks.clone() },
        roll: None,
    }
}

/// A wave's run name: the roll's plan, the wave's number and hosts.
fn wave_name(plan: &str, index: usize, hosts: &[String]) -> String {
    format!("{plan}: wave {} ({})", index + 1, hosts.join(", "))
}

/// The run of roll `roll_id`'s wave named `name`, when it was created.
async fn wave_run(journal: &Journal, roll_id: &str, name: &str) -> Option<Run> {
    let runs = journal.runs().await.ok()?;
    runs.into_iter().find(|r| r.parent.as_deref() == Some(roll_id) && r.plan_name == name)
}

async fn journaled_waves(journal: &Journal, id: &str) -> Result<Waves, Error> {
    let journaled = journal.events(id, None).await.map_err(|e| Error::failed(&e))?;
    journaled
        .iter()
        .find_map(|e| e.data.as_ref().and_then(|d| serde_json::from_value(d[WAVES].clone()).ok()))
        .ok_or_else(|| Error::Failed(format!("run {id}: the journal has no waves of this roll")))
}

async fn keep(lease: &Lease) -> Result<(), Error> {
    match lease.keep().await {
        Err(JournalError::LeaseLost { holder, .. }) => Err(Error::Lost(Lost { run: lease.run().to_string(), holder })),
        _ => Ok(()),
    }
}

async fn set_state(ctx: &Context<'_>, state: RunState) -> Result<(), Error> {
    let run = ctx.journal.run(ctx.lease.run()).await.map_err(|e| Error::failed(&e))?;
    ctx.journal.set_run_state(&run.id, run.generation, state).await.map_err(|e| Error::failed(&e))?;
    Ok(())
}

async fn note(journal: &Journal, run: &str, events: &Events, text: String) {
    note_with(journal, run, events, text, None).await;
}

/// [`note`] with a typed record for the report.
async fn note_with(journal: &Journal, run: &str, events: &Events, text: String, data: Option<&serde_json::Value>) {
    events.say(&text);
    if let Err(e) = journal.event(run, None, EventKind::Message, &text, data).await {
        events.warn(format!("could not journal: {e}"));
    }
}
