//! What a preview needs from the hosts and the journal besides the inventory.

use std::collections::HashMap;

use ferry_back::stale::{local_disks, unused_copies, History};
use ferry_driver::{Driver, Volume};
use ferry_journal::Journal;
use ferry_model::Inventory;
use ferry_plan::ResolvedMove;
use ferry_preview::checks::EarlierCopy;
use ferry_preview::{ObservedCompression, ObservedMemory};

use crate::drivers::AnyDriver;
use crate::events::Events;

/// For each moving VM, the unused copies of its host-local disks on the other hosts (any of
/// them may become its target), each judged ferry's or not by `ferry_back::stale`'s rule
/// from the journal (when there is one) and the VM's metadata. A host that cannot list its
/// volumes is skipped with a note: the move's driver still refuses any volume in its way.
/// A simulated fleet keeps no copies.
pub async fn earlier_copies(
    driver: &AnyDriver,
    journal: Option<&Journal>,
    inventory: &Inventory,
    moves: &[ResolvedMove],
    events: &Events,
) -> HashMap<String, Vec<EarlierCopy>> {
    let mut found: HashMap<String, Vec<EarlierCopy>> = HashMap::new();
    let moving: Vec<_> = moves
        .iter()
        .filter_map(|m| inventory.vms.iter().find(|v| v.uuid == m.uuid))
        .map(|vm| (vm, local_disks(vm)))
        .filter(|(_, disks)| !disks.is_empty())
        .collect();
    if driver.is_sim() || moving.is_empty() {
        return found;
    }
    let mut volumes: Vec<(String, Vec<Volume>)> = Vec::new();
    for host in &inventory.hosts {
        match driver.volumes(&host.name).await {
            Ok(v) => volumes.push((host.name.clone(), v)),
            Err(e) => events.warn(format!("{e}: copies left there are not looked for")),
        }
    }
    for (vm, disks) in moving {
        let mut history: Option<History> = None;
        for (host, at_host) in volumes.iter().filter(|(h, _)| *h != vm.host) {
            if unused_copies(&disks, at_host).is_empty() {
                continue;
            }
            if history.is_none() {
                let departures = match journal {
                    Some(j) => ferry_engine::departures(j, &vm.uuid).await.unwrap_or_else(|e| {
                        events.warn(format!("journal: {e}: {}'s moves there are not known", vm.name));
                        Vec::new()
                    }),
                    None => Vec::new(),
                };
                history = Some(History { departures, metadata: vm.ferry.clone() });
            }
            let history = history.as_ref().expect("set just above");
            for copy in ferry_back::stale::earlier_copies(&disks, at_host, history) {
                found.entry(vm.uuid.clone()).or_default().push(EarlierCopy {
                    host: host.clone(),
                    pool: copy.volume.pool,
                    name: copy.volume.name,
                    left_by_ferry: copy.attribution.map(|a| a.to_string()),
                });
            }
        }
    }
    found
}

/// What the journal tells of each moving VM's earlier migrations, into `config`: how its
/// memory compressed on its latest compressed migration, and how much memory its latest live
/// one carried. A journal that cannot be read is a warning: the estimate then assumes a 1:1
/// stream and all of memory to carry.
pub async fn learn_from_journal(
    journal: &Journal,
    moves: &[ResolvedMove],
    events: &Events,
    config: &mut ferry_preview::PreviewConfig,
) {
    for m in moves {
        match journal.last_compressed_attempt(&m.uuid).await {
            Ok(Some(attempt)) => {
                if let Some(ratio) = attempt.memory_per_byte_sent() {
                    config.compression.insert(m.uuid.clone(), ObservedCompression { ratio, run: attempt.run });
                }
            }
            Ok(None) => {}
            Err(e) => events.warn(format!("journal: {e}: {}'s compression ratio is not known", m.vm)),
        }
        match journal.last_live_attempt(&m.uuid).await {
            Ok(Some(attempt)) => {
                if let Some(bytes) = attempt.memory_bytes {
                    let carried_mib = bytes as f64 / (1u64 << 20) as f64;
                    config.carried.insert(m.uuid.clone(), ObservedMemory { carried_mib, run: attempt.run });
                }
            }
            Ok(None) => {}
            Err(e) => events.warn(format!("journal: {e}: how much memory {} carries is not known", m.vm)),
        }
    }
}

/// What a preview is asked for, besides its plan and cluster.
#[derive(Debug, Default)]
pub struct PreviewAsk {
    /// Checks whose failures become warnings.
    pub ignore: Vec<ferry_preview::checks::CheckName>,
    /// Explain each placement.
    pub explain: bool,
    /// Measure each VM's dirty rate (implied on a simulated fleet asked live).
    pub measure: bool,
    /// Seconds each measurement lasts.
    pub measure_seconds: u32,
    /// A saved inventory instead of asking the hosts: nothing is contacted.
    pub inventory: Option<Inventory>,
}

/// `ferry preview` of a plan of moves (a roll plan is previewed in waves, by `ferry-roll`):
/// every move's checks, placement and estimates, before anything is touched. `journal`,
/// when there is one, tells earlier copies and the compression each VM showed.
pub async fn preview_moves(
    source: &crate::cluster::Cluster,
    plan: &ferry_plan::Plan,
    ask: PreviewAsk,
    journal: Option<&Journal>,
    events: &Events,
) -> Result<ferry_preview::Preview, crate::Error> {
    let cluster = source.spec();
    let driver = AnyDriver::new(source);
    let offline = ask.inventory.is_some();
    if ask.measure && offline {
        return Err(crate::Error::BadInput("--measure asks the hosts; it cannot be used with --inventory".into()));
    }
    let inventory = match ask.inventory {
        Some(inventory) => inventory,
        None => driver.inventory().await,
    };
    let moves = ferry_plan::resolve(plan, &cluster, &inventory).map_err(|errors| {
        crate::Error::BadInput(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })?;
    let mut config = ferry_preview::PreviewConfig {
        ignore: ask.ignore,
        explain: ask.explain,
        memory: crate::drivers::memory_profiles(source),
        now_ms: Some(crate::owners::now_ms()),
        ..ferry_preview::PreviewConfig::default()
    };
    if let Some(journal) = journal {
        learn_from_journal(journal, &moves, events, &mut config).await;
    }
    if !offline {
        config.earlier_copies = earlier_copies(&driver, journal, &inventory, &moves, events).await;
    }
    if ask.measure || (driver.is_sim() && !offline) {
        let uuids = moves.iter().map(|m| m.uuid.clone()).collect();
        let (rates, failed) = driver.measure_dirty_rates(uuids, ask.measure_seconds).await;
        for (uuid, why) in failed {
            let name = moves.iter().find(|m| m.uuid == uuid).map_or(uuid.as_str(), |m| m.vm.as_str());
            events.warn(format!("could not measure {name}: {why}"));
        }
        config.dirty_rates = rates;
    }
    Ok(ferry_preview::preview(&cluster, &inventory, plan, &moves, &config))
}
