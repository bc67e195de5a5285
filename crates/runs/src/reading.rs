//! What the journal says about runs, as the views `ferry runs`, `ferry status` and `ferry
//! report` print and `ferry serve` answers: one reading for both. Read-only.

use ferry_document::RunDocument;
use ferry_journal::{Journal, JournalError, Run, RunKind};
use ferry_report::{
    build_report, legs, planned, roll_view, run_view, status_view, Report, RunRecords, RunView, StatusView, WaveRecords,
};

use crate::events::Error;
use crate::owners::{find_run, now_ms};

/// Every run of the journal, newest first, with its moves' statuses counted.
pub async fn run_views(journal: &Journal) -> Result<Vec<RunView>, Error> {
    let now = now_ms();
    let mut views = Vec::new();
    for run in journal.runs().await.map_err(failed)? {
        let moves = journal.moves(&run.id).await.map_err(failed)?;
        views.push(run_view(&run, moves.iter().map(|m| m.status), now));
    }
    Ok(views)
}

/// Run `id`'s status (the latest run's when `None`): its moves, each with its phase.
pub async fn status(journal: &Journal, id: Option<&str>) -> Result<StatusView, Error> {
    let run = match id {
        Some(id) => find_run(journal, id).await?,
        None => journal
            .latest_run()
            .await
            .map_err(failed)?
            .ok_or_else(|| Error::BadInput(format!("no runs in the journal at {}", journal.location())))?,
    };
    let moves = journal.moves(&run.id).await.map_err(failed)?;
    let events = journal.events(&run.id, None).await.map_err(failed)?;
    let mut view = status_view(&run, &moves, &events, now_ms());
    if run.kind == RunKind::Roll {
        let all = journal.runs().await.map_err(failed)?;
        view.roll = Some(roll_view(&events, &roll_waves(journal, &run, &all).await?));
    }
    Ok(view)
}

/// Run `id`'s report: the run, every move with its attempts and events, the summary, the
/// runs linked to it and, for a roll, its waves.
pub async fn report(journal: &Journal, id: &str) -> Result<Report, Error> {
    let run = find_run(journal, id).await?;
    let RunRecords { run, moves, attempts, events } = records(journal, &run).await?;
    // A document this ferry cannot read leaves out what only it says; the records still tell the run.
    let planned = RunDocument::read(&run.id, &journal.run_documents(&run.id).await.map_err(failed)?)
        .map(|(document, cluster)| planned(&document, &cluster, &moves))
        .unwrap_or_default();
    let all = journal.runs().await.map_err(failed)?;
    let roll = match run.kind {
        RunKind::Roll => Some(roll_view(&events, &roll_waves(journal, &run, &all).await?)),
        _ => None,
    };
    let mut report = build_report(&run, &moves, &attempts, events, planned, now_ms());
    report.roll = roll;
    let mut linked = std::collections::HashMap::new();
    for r in all
        .iter()
        .filter(|r| r.parent.as_deref() == Some(run.id.as_str()) || run.parent.as_deref() == Some(r.id.as_str()))
    {
        linked.insert(r.id.clone(), journal.moves(&r.id).await.map_err(failed)?);
    }
    report.legs = legs(&run, &all, |id| linked.remove(id).unwrap_or_default(), now_ms());
    Ok(report)
}

/// The records of roll `roll`'s waves (the runs naming it as parent) and of each wave's
/// returns (the rollback runs naming the wave), among `all` runs.
async fn roll_waves(journal: &Journal, roll: &Run, all: &[Run]) -> Result<Vec<WaveRecords>, Error> {
    let mut waves = Vec::new();
    for wave in children_of(all, &roll.id) {
        let mut returns = Vec::new();
        for back in children_of(all, &wave.id).filter(|r| r.kind == RunKind::Rollback) {
            returns.push(records(journal, back).await?);
        }
        returns.sort_by_key(|r| r.run.created_ms);
        waves.push(WaveRecords { wave: records(journal, wave).await?, returns });
    }
    Ok(waves)
}

/// The runs among `all` whose parent is `parent`.
fn children_of<'a>(all: &'a [Run], parent: &'a str) -> impl Iterator<Item = &'a Run> {
    all.iter().filter(move |r| r.parent.as_deref() == Some(parent))
}

/// Everything the journal has of `run`.
async fn records(journal: &Journal, run: &Run) -> Result<RunRecords, Error> {
    Ok(RunRecords {
        run: run.clone(),
        moves: journal.moves(&run.id).await.map_err(failed)?,
        attempts: journal.attempts(&run.id).await.map_err(failed)?,
        events: journal.events(&run.id, None).await.map_err(failed)?,
    })
}

fn failed(e: JournalError) -> Error {
    Error::failed(&e)
}
