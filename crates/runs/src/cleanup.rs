//! Cleaning up: where does each VM of a run (or each VM named) really run, and what is
//! left around it? Every action is said before it is done; a dry run only says them.

use std::path::PathBuf;

use ferry_back::cleanup::{apply, plan, Finding, Known, Options, Subject, Verdict, World};
use ferry_driver::Driver;
use ferry_journal::{AttemptKind, EventKind, Journal, Move, RunKind};
use ferry_libvirt::LibvirtDriver;
use ferry_model::{ClusterSpec, Status, Vm, VmState};
use serde_json::{json, Value};

use crate::cluster::{self, simulated};
use crate::events::{Error, Events};
use crate::journals::JournalAt;
use crate::owners::{documents, find_run, held_by_another, owner};

/// Why cleanup does not take a simulated fleet.
const SIMULATED: &str = "cleanup reconciles real hosts; a simulated fleet's world lives only in the process that \
     runs it, and leaves nothing behind to clean up";

/// What `ferry cleanup` asks.
#[derive(Debug, Clone)]
pub struct CleanupAsk {
    /// The run whose VMs to clean up.
    pub run: Option<String>,
    /// VMs to clean up, by name or UUID.
    pub vms: Vec<String>,
    /// Judge from ferry's metadata on the domains, without the journal.
    pub from_hypervisor: bool,
    /// Also delete copies of a VM's host-local disks kept on hosts it left.
    pub source_volumes: bool,
    /// Only say what would be done.
    pub dry_run: bool,
    /// The cluster argument.
    pub cluster: Option<PathBuf>,
    /// The journal.
    pub journal: JournalAt,
}

/// What cleanup found and did.
#[derive(Debug, Clone)]
pub struct Cleaned {
    /// Every VM was found in one place and every step succeeded.
    pub ok: bool,
    /// Per VM, what was found and each step with its result.
    pub vms: Vec<Value>,
}

/// Cleans up what `args` names; each finding and step is said as it goes.
pub async fn cleanup(args: &CleanupAsk, events: &Events) -> Result<Cleaned, Error> {
    let bad = |e: String| Err(Error::BadInput(e));
    if args.run.is_none() && args.vms.is_empty() && !args.from_hypervisor {
        return bad("name a run, or --vm VM, or --from-hypervisor (every VM carrying ferry's metadata)".into());
    }
    if cluster::is_sim(args.cluster.as_deref()) {
        return bad(SIMULATED.into());
    }
    // The journal: required for a run named without --from-hypervisor, used when present.
    let journal = if args.from_hypervisor { None } else { args.journal.open_existing().await.ok() };
    let mut run_moves: Vec<Move> = Vec::new();
    let mut cluster: Option<ClusterSpec> = None;
    if let (Some(id), false) = (&args.run, args.from_hypervisor) {
        let Some(journal) = &journal else {
            return bad(format!("no journal to find run {id} in; `--from-hypervisor` finds its VMs by their metadata"));
        };
        let run = find_run(journal, id).await?;
        if !run.state.is_ended() {
            let who = if held_by_another(&run, &owner()) { "is running" } else { "did not finish" };
            return bad(format!(
                "run {} {who}: `ferry resume {}` finishes it, `ferry abort {}` ends it; clean up after",
                run.id, run.id, run.id
            ));
        }
        match documents(journal, &run.id).await? {
            (_, c) if simulated(&c) => return bad(format!("run {}: {SIMULATED}", run.id)),
            (_, c) => cluster = Some(c),
        }
        run_moves = journal.moves(&run.id).await.unwrap_or_default();
    }
    let cluster = match cluster {
        Some(c) => c,
        None => match cluster::read_hosts(args.cluster.as_deref()) {
            Ok((_, c)) => c,
            Err(e) => return bad(e),
        },
    };
    let driver = LibvirtDriver::new(cluster.clone());
    let inventory = driver.inventory().await;

    // Who to look at.
    let mut subjects: Vec<Subject> = Vec::new();
    let mut add = |vm: &str, uuid: &str| {
        if !subjects.iter().any(|s| s.uuid == uuid) {
            subjects.push(Subject { vm: vm.to_string(), uuid: uuid.to_string(), known: Known::default() });
        }
    };
    for m in &run_moves {
        add(&m.vm, &m.uuid);
    }
    if args.from_hypervisor && args.vms.is_empty() {
        for v in &inventory.vms {
            let named = v.ferry.as_ref().is_some_and(|m| args.run.as_ref().is_none_or(|r| *r == m.run_id));
            let twice = args.run.is_none() && inventory.vms.iter().filter(|o| o.uuid == v.uuid).count() > 1;
            if named || twice {
                add(&v.name, &v.uuid);
            }
        }
    }
    for name in &args.vms {
        if let Some(v) = inventory.vms.iter().find(|v| v.name == *name || v.uuid == *name) {
            add(&v.name, &v.uuid);
            continue;
        }
        // Known to no host: the journal may still know its UUID.
        let known = match &journal {
            Some(j) => latest_move(j, name).await,
            None => None,
        };
        match known {
            Some(m) => add(&m.vm, &m.uuid),
            None => {
                let hint = ferry_plan::closest(name, inventory.vms.iter().map(|v| v.name.as_str()))
                    .map(|c| format!("; did you mean {c}?"))
                    .unwrap_or_default();
                return bad(format!("--vm {name}: no such VM on any host that answered, nor in the journal{hint}"));
            }
        }
    }
    if let Some(journal) = &journal {
        for s in &mut subjects {
            s.known = knowledge(journal, &s.uuid, args.run.as_deref().filter(|_| !args.from_hypervisor)).await;
        }
    }

    // What the hosts say besides the inventory. The inventory skips domains whose
    // definition libvirt holds locked (an incoming migration's paused copy): `locate` sees
    // them.
    let mut world = World { inventory, ..World::default() };
    for s in &subjects {
        let Ok(locations) = driver.locate(&s.uuid).await else { continue };
        for l in locations {
            if world.inventory.vms.iter().any(|v| v.uuid == s.uuid && v.host == l.host) {
                continue;
            }
            let known = world.inventory.vms.iter().find(|v| v.uuid == s.uuid).cloned();
            world.inventory.vms.push(Vm {
                uuid: s.uuid.clone(),
                name: s.vm.clone(),
                host: l.host.clone(),
                state: l.state,
                disks: Vec::new(),
                nics: Vec::new(),
                ferry: None,
                tags: Default::default(),
                ..known.unwrap_or_else(|| unknown_vm(&s.uuid))
            });
        }
    }
    for s in &subjects {
        for copy in world.inventory.vms.iter().filter(|v| v.uuid == s.uuid && v.state != VmState::ShutOff) {
            if let Ok(Some(_)) = driver.job(&copy.host, &copy.uuid).await {
                world.jobs.push((copy.host.clone(), copy.uuid.clone()));
            }
        }
    }
    for host in &world.inventory.hosts {
        match driver.volumes(&host.name).await {
            Ok(v) => world.volumes.extend(v),
            Err(e) => events.warn(format!("{e}: its volumes are not judged")),
        }
    }
    let options = Options { source_volumes: args.source_volumes };
    let findings = plan(&subjects, &world, options);

    let mut ok = true;
    let mut results = Vec::new();
    if subjects.is_empty() {
        events.say("no VM to look at");
    }
    for f in &findings {
        events.say(headline(f));
        ok &= matches!(f.verdict, Verdict::Found { .. });
        let journal_run = subjects.iter().find(|s| s.uuid == f.uuid).and_then(|s| s.known.run.clone());
        let mut done = Vec::new();
        for step in &f.steps {
            if args.dry_run {
                events.say(format!("  would {step}"));
                continue;
            }
            events.say(format!("  - {step}"));
            let result = apply(&driver, &step.action).await;
            let text = match &result {
                Ok(what) => format!("cleanup: {step}: {what}"),
                Err(e) => format!("cleanup: {step}: failed: {e}"),
            };
            events.say(match &result {
                Ok(what) => format!("    done: {what}"),
                Err(e) => format!("    failed: {e}"),
            });
            ok &= result.is_ok();
            if let (Some(journal), Some(run)) = (&journal, &journal_run) {
                let _ = journal.event(run, Some(&f.uuid), EventKind::Message, &text, None).await;
            }
            done.push(json!({ "step": step, "ok": result.is_ok(), "result": result.unwrap_or_else(|e| e) }));
        }
        for n in &f.notes {
            events.say(format!("  note: {n}"));
        }
        results.push(json!({ "finding": f, "done": done }));
    }
    if !args.dry_run {
        if let Some(journal) = &journal {
            if let Err(e) = correct_lost(&driver, journal, &findings, &subjects).await {
                events.warn(e);
            }
        }
    }
    if args.dry_run {
        events.say("dry run: nothing changed");
    }
    Ok(Cleaned { ok, vms: results })
}

/// A VM known only by where `locate` saw it.
fn unknown_vm(uuid: &str) -> Vm {
    Vm {
        uuid: uuid.to_string(),
        name: uuid.to_string(),
        host: String::new(),
        vcpus: 0,
        memory_mib: 0,
        cpu_model: None,
        virt_type: String::new(),
        memory_locked: false,
        state: VmState::Other,
        disks: Vec::new(),
        nics: Vec::new(),
        ferry: None,
        tags: Default::default(),
    }
}

fn headline(f: &Finding) -> String {
    match &f.verdict {
        Verdict::Found { host, state } if f.steps.is_empty() => {
            format!("{}: {state} on {host}; nothing to clean up", f.vm)
        }
        Verdict::Found { host, state } => format!("{}: {state} on {host}", f.vm),
        Verdict::Lost { reason, advice } => format!("{}: FAILURE-LOST: {reason}; {advice}", f.vm),
        Verdict::Busy { by } => format!("{}: being moved by {by}: left alone", f.vm),
    }
}

/// The latest journaled move of a VM, by name or UUID.
async fn latest_move(journal: &Journal, vm: &str) -> Option<Move> {
    for run in journal.runs().await.ok()?.into_iter().rev() {
        if let Some(m) = journal.moves(&run.id).await.ok()?.into_iter().find(|m| m.vm == vm || m.uuid == vm) {
            return Some(m);
        }
    }
    None
}

/// What the journal knows about a VM: from `run` when given, else from its latest run;
/// and whether a run with a live owner is moving it now.
async fn knowledge(journal: &Journal, uuid: &str, run: Option<&str>) -> Known {
    let mut known = Known::default();
    let Ok(mut all) = journal.runs().await else { return known };
    // Newest first.
    all.sort_by_key(|r| std::cmp::Reverse((r.created_ms, r.id.clone())));
    let me = owner();
    for r in &all {
        if r.state.is_ended() || !held_by_another(r, &me) {
            continue;
        }
        if let Ok(m) = journal.move_of(&r.id, uuid).await {
            if !m.status.is_terminal() {
                known.busy = Some(format!("run {} (owner {})", r.id, r.owner.as_deref().unwrap_or("?")));
            }
        }
    }
    for r in &all {
        if run.is_some_and(|id| id != r.id) {
            continue;
        }
        let Ok(m) = journal.move_of(&r.id, uuid).await else { continue };
        known.run = Some(r.id.clone());
        known.source = Some(m.source.clone());
        known.moved = m.status.is_success();
        if let Ok(attempts) = journal.attempts(&r.id).await {
            // Only these may have left what they prepared: an attempt that could not start
            // (FAILURE-INIT, e.g. because a volume of that name was there already) created
            // nothing, and a successful one left nothing behind.
            known.failed_targets = attempts
                .iter()
                .filter(|a| a.uuid == uuid)
                .filter(|a| {
                    matches!(a.outcome, None | Some(Status::FailureWait | Status::FailureLost | Status::Aborted))
                })
                .map(|a| a.target.clone())
                .collect();
        }
        break;
    }
    known
}

/// A FAILURE-LOST move whose VM cleanup found in one place gets the status that place
/// means: on its target, the move happened (adopted); on its source, it did not.
async fn correct_lost(
    driver: &LibvirtDriver,
    journal: &Journal,
    findings: &[Finding],
    subjects: &[Subject],
) -> Result<(), String> {
    for f in findings {
        let Verdict::Found { .. } = &f.verdict else { continue };
        let Some(run) = subjects.iter().find(|s| s.uuid == f.uuid).and_then(|s| s.known.run.clone()) else { continue };
        let m = journal.move_of(&run, &f.uuid).await.map_err(|e| e.to_string())?;
        if m.status != Status::FailureLost {
            continue;
        }
        let locations = driver.locate(&f.uuid).await.map_err(|e| e.to_string())?;
        let [only] = locations.as_slice() else { continue };
        let rollback = journal.run(&run).await.map_err(|e| e.to_string())?.kind == RunKind::Rollback;
        let cold = journal
            .attempts(&run)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|a| a.uuid == f.uuid)
            .max_by_key(|a| a.number)
            .is_some_and(|a| a.kind == AttemptKind::Cold);
        let (status, message) = match (&m.target, rollback, cold) {
            (Some(t), true, _) if *t == only.host => {
                (Status::RolledBack, format!("cleanup found it {} on {t}: returned", only.state))
            }
            (Some(t), false, true) if *t == only.host => {
                (Status::SuccessCold, format!("cleanup found it {} on {t}: adopted", only.state))
            }
            (Some(t), false, false) if *t == only.host => {
                (Status::Success, format!("cleanup found it {} on {t}: adopted", only.state))
            }
            (_, true, _) if m.source == only.host => {
                (Status::RollbackFailed, format!("cleanup found it {} on {}: not returned", only.state, m.source))
            }
            (_, false, _) if m.source == only.host => (
                Status::FailureWait,
                format!("cleanup found it {} on its source {}: it did not move", only.state, m.source),
            ),
            _ => continue,
        };
        journal.set_status(&run, &f.uuid, m.generation, status, &message).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
