//! `ferry tag`: the operators' tags on a VM, kept in its domain's metadata so that they
//! travel with it (e.g. `maintenance=shutdown`, its behaviour in a roll).

use std::collections::BTreeMap;
use std::process::ExitCode;

use ferry_driver::Driver;
use ferry_model::Location;
use ferry_plan::{Maintenance, MAINTENANCE_TAG};
use ferry_runs::cluster::Cluster;
use ferry_runs::drivers::AnyDriver;
use ferry_runs::Error;

use crate::cluster::ClusterArg;
use crate::show::{self, exit, Output};

/// `ferry tag` arguments.
#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// The VM, by name or UUID.
    pub vm: String,
    /// Tags to set, as KEY=VALUE (`maintenance=live|cold|shutdown|stay`); none: print the
    /// VM's tags.
    #[arg(value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Remove the tag KEY. Repeatable.
    #[arg(long = "remove", value_name = "KEY")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub cluster: ClusterArg,
}

/// Sets or prints a VM's tags: exit 0 when done, 1 when the VM is not on exactly one host,
/// 2 for bad input (nothing written).
pub async fn run(args: TagArgs, output: Output) -> ExitCode {
    let tagged = async {
        let set = parse(&args.set, &args.remove).map_err(Error::BadInput)?;
        let cluster = ferry_runs::cluster::read(args.cluster.location()).map_err(Error::BadInput)?;
        if let Cluster::Sim(_) = cluster {
            return Err(Error::BadInput(
                "ferry tag: a simulated fleet's VMs live only in the process that simulates them; tags are for \
                     real hosts"
                    .into(),
            ));
        }
        let driver = AnyDriver::new(&cluster);
        let inventory = driver.inventory().await;
        let vm = inventory
            .vms
            .iter()
            .find(|v| v.name == args.vm || v.uuid == args.vm)
            .ok_or_else(|| Error::Failed(format!("no VM {} on any host that answered", args.vm)))?;
        let mut tags = vm.tags.clone();
        if !set.is_empty() || !args.remove.is_empty() {
            let locations = driver.locate(&vm.uuid).await.map_err(|e| Error::Failed(e.to_string()))?;
            if let [_, _, ..] = locations.as_slice() {
                let hosts: Vec<&str> = locations.iter().map(|l: &Location| l.host.as_str()).collect();
                return Err(Error::Failed(format!(
                    "{} is known on {}: its tags are written where it is defined alone (`ferry cleanup` removes a \
                     stale copy)",
                    vm.name,
                    hosts.join(" and ")
                )));
            }
            for key in &args.remove {
                tags.remove(key);
            }
            tags.extend(set);
            driver.set_tags(&vm.host, &vm.uuid, tags.clone()).await.map_err(|e| Error::Failed(e.to_string()))?;
        }
        let text = match output {
            Output::Json => {
                let json = serde_json::json!({ "vm": vm.name, "host": vm.host, "tags": tags });
                format!("{}\n", serde_json::to_string_pretty(&json).expect("tags serialise"))
            }
            Output::Text => {
                let each: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!(
                    "{} on {}: {}\n",
                    vm.name,
                    vm.host,
                    if each.is_empty() { "no tags".into() } else { each.join(" ") }
                )
            }
        };
        show::write_stdout(text.as_bytes()).map_err(|e| Error::Failed(format!("cannot print: {e}")))?;
        Ok(true)
    };
    exit("tag", false, tagged.await)
}

/// The tags to set from `KEY=VALUE` arguments, each checked, and the keys to remove.
fn parse(set: &[String], remove: &[String]) -> Result<BTreeMap<String, String>, String> {
    let key_ok = |key: &str| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    };
    let mut tags = BTreeMap::new();
    for arg in set {
        let (key, value) = arg.split_once('=').ok_or_else(|| format!("ferry tag: {arg:?}: expected KEY=VALUE"))?;
        if !key_ok(key) {
            return Err(format!("ferry tag: {arg:?}: a key is lowercase letters, digits, '.', '_' and '-'"));
        }
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(format!("ferry tag: {arg:?}: a value is not empty and has no control characters"));
        }
        if key == MAINTENANCE_TAG {
            value.parse::<Maintenance>().map_err(|e| format!("ferry tag: {key}: {e}"))?;
        }
        if tags.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("ferry tag: {key} given twice"));
        }
    }
    if let Some(key) = remove.iter().find(|k| tags.contains_key(k.as_str())) {
        return Err(format!("ferry tag: {key} both set and removed"));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_before_anything_is_written() {
        let ok = parse(&["maintenance=shutdown".into(), "team=db".into()], &["old".into()]).expect("good tags");
        assert_eq!(ok.get("maintenance").map(String::as_str), Some("shutdown"));
        for bad in ["maintenance=reboot", "noequals", "Upper=x", "=x", "k="] {
            assert!(parse(&[bad.into()], &[]).is_err(), "{bad} refused");
        }
        assert!(parse(&["a=1".into(), "a=2".into()], &[]).is_err());
        assert!(parse(&["a=1".into()], &["a".into()]).is_err());
    }
}
