//! A simulated run's world, rebuilt in a new process from its fleet file and the journal.

use ferry_journal::{Journal, Run};
use ferry_sim::Fleet;

/// The fleet as simulated run `run` left it, for a command that goes on from there in a new
/// process (`ferry rollback RUN --cluster sim:FILE`): a simulation's world lives only in the
/// process that ran it, so it is rebuilt from `fleet` (the file it started from) and the
/// journal. Every VM that a run of the lineage (the runs `run` descends from by `parent`,
/// and those descending from them: its rollbacks, what it rolled back) moved successfully
/// is where the last such move took it; the others are where the file put them (a VM the
/// run lost is back on its source). The virtual clock starts when the lineage last wrote
/// the journal, and the file's host faults keep their instants (one already past is down
/// from the start).
pub async fn continued(fleet: &Fleet, journal: &Journal, run: &Run) -> Result<Fleet, String> {
    let runs = journal.runs().await.map_err(|e| e.to_string())?;
    let parent_of = |id: &str| runs.iter().find(|r| r.id == id).and_then(|r| r.parent.clone());
    let root_of = |id: &str| {
        let mut id = id.to_string();
        let mut steps = 0;
        while let Some(parent) = parent_of(&id).filter(|_| steps < runs.len()) {
            id = parent;
            steps += 1;
        }
        id
    };
    let root = root_of(&run.id);
    let mut lineage: Vec<&Run> = runs.iter().filter(|r| root_of(&r.id) == root).collect();
    lineage.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));

    let mut next = fleet.clone();
    let start_ms = fleet.start_unix() * 1000;
    let mut end_ms = start_ms;
    for r in lineage {
        end_ms = end_ms.max(r.updated_ms).max(r.finished_ms.unwrap_or(0)).max(r.heartbeat_ms.unwrap_or(0));
        for m in journal.moves(&r.id).await.map_err(|e| e.to_string())? {
            let Some(target) = m.target.filter(|t| m.status.is_success() && fleet.hosts.iter().any(|h| h.name == *t))
            else {
                continue;
            };
            if let Some(i) = (0..fleet.vms.len()).find(|&i| fleet.uuid(i) == m.uuid) {
                next.vms[i].host = target;
            }
        }
    }
    let elapsed_s = u64::try_from(end_ms - start_ms).unwrap_or(0).div_ceil(1000);
    next.sim.start = ferry_plan::time::format_rfc3339(fleet.start_unix() + elapsed_s as i64);
    for fault in &mut next.faults {
        fault.down_at_s = (fault.down_at_s - elapsed_s as f64).max(0.0);
    }
    Ok(next)
}
