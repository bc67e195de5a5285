//! The lab's private network (`--link`), for real: runs the commands [`Net`] computes, and
//! finds and removes a lab's namespaces and links by their prefix, so that nothing is left
//! behind whatever the lab's state file says.

use std::io;
use std::process::Command;

use tracing::{info, warn};

use crate::layout::{self, cmd, Cmd, Net, HOST_INTERFACE};
use crate::LabError;

/// Builds the network from nothing. On failure, removes whatever of it was made.
pub fn build(net: &Net) -> Result<(), LabError> {
    for argv in net.build_commands() {
        if let Err(e) = run(&argv) {
            if let Err(cleanup) = remove(&net.prefix) {
                warn!(error = %cleanup, "could not remove a half-built lab network");
            }
            return Err(e);
        }
    }
    info!(network = %net.cidr(), hosts = net.hosts, link_mib_s = net.link_mib_s, "lab network up");
    Ok(())
}

/// Applies the link rate to every host (also to a running lab's).
pub fn shape(net: &Net) -> Result<(), LabError> {
    net.shape_commands().iter().try_for_each(|argv| run(argv).map(drop))
}

/// Whether every namespace and link of `net` exists: the lab's namespace, the root link and
/// each host's namespace with its interface.
pub fn is_complete(net: &Net) -> bool {
    let (Ok(namespaces), Ok(links)) = (namespaces(), links()) else { return false };
    let has_ns = |name: &str| namespaces.iter().any(|n| n == name);
    has_ns(&net.net_namespace())
        && links.contains(&net.root_link())
        && (0..net.hosts).all(|i| {
            let ns = net.host_namespace(i);
            has_ns(&ns) && run(&cmd(&["ip", "-n", &ns, "link", "show", HOST_INTERFACE])).is_ok()
        })
}

/// Removes every namespace and root-namespace link whose name starts with `prefix-`.
/// Refuses, touching nothing, when processes still run in one of those namespaces: the
/// caller has stopped every process of its own lab, so they belong to someone else.
pub fn remove(prefix: &str) -> Result<(), LabError> {
    let namespaces = namespaces()?;
    let mut busy = Vec::new();
    let mut pids = Vec::new();
    for ns in namespaces.iter().filter(|n| layout::owned_by(prefix, n)) {
        let inside = pids_in(ns)?;
        if !inside.is_empty() {
            busy.push(ns.clone());
            pids.extend(inside);
        }
    }
    if !busy.is_empty() {
        return Err(LabError::NetworkInUse { namespaces: busy.join(", "), pids: pids.join(", ") });
    }
    let cmds = layout::teardown_commands(prefix, &links()?, &namespaces);
    for argv in &cmds {
        run(argv)?;
    }
    if !cmds.is_empty() {
        info!(prefix, removed = cmds.len(), "lab network removed");
    }
    Ok(())
}

/// Refuses a network whose addresses the machine already routes somewhere else.
pub fn check_subnet_free(net: &Net) -> Result<(), LabError> {
    let routes = run(&cmd(&["ip", "-o", "-4", "route", "show", "root", &net.cidr()]))?;
    let foreign = layout::foreign_routes(&routes, &net.root_link());
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(LabError::SubnetTaken { subnet: net.cidr(), routes: foreign.join("; ") })
    }
}

/// Named network namespaces. Without iproute2 there are none the lab could have made.
fn namespaces() -> Result<Vec<String>, LabError> {
    match run(&cmd(&["ip", "netns", "list"])) {
        Ok(text) => Ok(layout::parse_netns_list(&text)),
        Err(LabError::Spawn { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Interfaces of the root namespace.
fn links() -> Result<Vec<String>, LabError> {
    match run(&cmd(&["ip", "-o", "link", "show"])) {
        Ok(text) => Ok(layout::parse_link_list(&text)),
        Err(LabError::Spawn { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn pids_in(ns: &str) -> Result<Vec<String>, LabError> {
    let text = run(&cmd(&["ip", "netns", "pids", ns]))?;
    Ok(text.split_whitespace().map(String::from).collect())
}

/// Runs one command; its stdout, or its stderr as the error.
fn run(argv: &Cmd) -> Result<String, LabError> {
    let output = Command::new(&argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|source| LabError::Spawn { what: argv.join(" "), source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Network {
            command: argv.join(" "),
            reason: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}
