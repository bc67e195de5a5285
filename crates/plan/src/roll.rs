//! A plan's `[roll]` section: rolling maintenance of many hosts, each drained, handed to a
//! hook, checked and given its VMs back.
//!
//! ```toml
//! [roll]
//! hosts = "all"                       # ["host-a", "host-b"], "group:rack12" or "tag:ssd"
//! hook = "ssh root@$FERRY_HOST 'apt-get -y upgrade && reboot'"
//! hook_timeout_s = 3600
//! check = "virsh -c qemu+tls://$FERRY_HOST/system version"   # must pass before VMs return
//! check_timeout_s = 600
//! max_unavailable = 1                 # hosts in maintenance at once
//! reserve = "largest-host"            # "none", or { memory_mib = 65536, vcpus = 32 }
//! redundancy_groups = [["vios-a", "vios-b"]]   # never in maintenance together
//! return = true                       # false: VMs stay where they went, and the roll ends
//!                                      # with a rebalance by the plan's placement
//! canary = 1                          # hosts done first; then wait for confirmation
//! on_host_failure = "stop"            # stop | skip
//! hook_sim_s = 300                    # the hook's time on a simulated fleet
//!
//! [roll.maintenance]                  # per VM: live (default) | cold | shutdown | stay
//! db-1 = "shutdown"
//! ```
//!
//! What needs the cluster (host names, groups, tags, the reserve against the capacity) is
//! checked by `ferry-roll` with the cluster at hand; the lines kept here let it point at them.

use std::collections::BTreeMap;

use ferry_model::Vm;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The hosts a roll goes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostSelector {
    /// Every host of the cluster file, in its order.
    All,
    /// These hosts, in this order.
    Hosts(Vec<String>),
    /// The hosts of a group, in the cluster file's order.
    Group(String),
    /// The hosts with a tag, in the cluster file's order.
    Tag(String),
}

/// Capacity that must stay free outside the hosts in maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reserve {
    /// Nothing beyond room for the moved VMs.
    None,
    /// As much as the largest host holds (N+1: any one host may still fail).
    LargestHost,
    /// This much memory and these vCPUs.
    Capacity {
        /// MiB.
        memory_mib: u64,
        /// vCPUs.
        vcpus: u32,
    },
}

/// What a roll does when a host's hook or check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnHostFailure {
    /// The roll stops; the host stays drained.
    Stop,
    /// The host stays drained and the roll goes on with the others.
    Skip,
}

/// The tag (`ferry tag`) that gives a VM its behaviour in a roll the plan does not name it in.
pub const MAINTENANCE_TAG: &str = "maintenance";

/// What happens to one VM while its host is in maintenance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Maintenance {
    /// Moved live (the default).
    #[default]
    Live,
    /// Moved cold.
    Cold,
    /// Shut down on its host for the maintenance, started there again after.
    Shutdown,
    /// Not moved: its host is left out of the roll while the VM runs.
    Stay,
}

impl Maintenance {
    /// Every behaviour, for messages.
    pub const NAMES: &'static str = "live, cold, shutdown, stay";

    /// The name in plans and tags.
    pub fn name(self) -> &'static str {
        match self {
            Maintenance::Live => "live",
            Maintenance::Cold => "cold",
            Maintenance::Shutdown => "shutdown",
            Maintenance::Stay => "stay",
        }
    }
}

impl std::str::FromStr for Maintenance {
    type Err = String;

    fn from_str(name: &str) -> Result<Maintenance, String> {
        match name {
            "live" => Ok(Maintenance::Live),
            "cold" => Ok(Maintenance::Cold),
            "shutdown" => Ok(Maintenance::Shutdown),
            "stay" => Ok(Maintenance::Stay),
            _ => Err(format!("{name:?} is not one of {}", Maintenance::NAMES)),
        }
    }
}

/// A validated `[roll]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roll {
    /// The hosts.
    pub hosts: HostSelector,
    /// The line that names them.
    pub hosts_line: Option<usize>,
    /// The command run for each host once it is empty (`FERRY_HOST`, `FERRY_VMS`,
    /// `FERRY_RUN_ID` in its environment).
    pub hook: Option<String>,
    /// How long the hook may take, s.
    pub hook_timeout_s: u64,
    /// The command that must pass before the host takes VMs again.
    pub check: Option<String>,
    /// How long the check may take, s.
    pub check_timeout_s: u64,
    /// Hosts in maintenance at once.
    pub max_unavailable: usize,
    /// Capacity kept free outside the hosts in maintenance.
    pub reserve: Reserve,
    /// The line that sets it.
    pub reserve_line: Option<usize>,
    /// Sets of hosts never in maintenance together.
    pub redundancy_groups: Vec<Vec<String>>,
    /// The line that lists them.
    pub redundancy_line: Option<usize>,
    /// Whether each host's VMs come back after its maintenance.
    pub return_vms: bool,
    /// Hosts done first, before a confirmation.
    pub canary: usize,
    /// What a failed hook or check does.
    pub on_host_failure: OnHostFailure,
    /// The hook's duration on a simulated fleet, s.
    pub hook_sim_s: Option<f64>,
    /// Per VM (by name): what it does during its host's maintenance, with the line.
    pub maintenance: BTreeMap<String, (Maintenance, Option<usize>)>,
}

impl Roll {
    /// A VM's behaviour as the plan says (live unless named).
    pub fn behaviour_of(&self, vm: &str) -> Maintenance {
        self.maintenance.get(vm).map_or(Maintenance::Live, |(m, _)| *m)
    }

    /// A VM's behaviour: as the plan names it, else as its `maintenance` tag says (`ferry
    /// tag VM maintenance=…`), else live.
    pub fn behaviour_for(&self, vm: &Vm) -> Maintenance {
        self.maintenance
            .get(&vm.name)
            .map(|(m, _)| *m)
            .or_else(|| vm.tags.get(MAINTENANCE_TAG).and_then(|t| t.parse().ok()))
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoll {
    hosts: Option<Spanned<toml::Value>>,
    hook: Option<Spanned<String>>,
    hook_timeout_s: Option<Spanned<i64>>,
    check: Option<Spanned<String>>,
    check_timeout_s: Option<Spanned<i64>>,
    max_unavailable: Option<Spanned<i64>>,
    reserve: Option<Spanned<toml::Value>>,
    redundancy_groups: Option<Spanned<Vec<Vec<String>>>>,
    #[serde(rename = "return")]
    return_vms: Option<bool>,
    canary: Option<Spanned<i64>>,
    on_host_failure: Option<Spanned<String>>,
    hook_sim_s: Option<Spanned<f64>>,
    #[serde(default)]
    maintenance: BTreeMap<String, Spanned<String>>,
}

/// Where a problem is: a byte span of the plan's text, the field, and what is wrong.
pub(crate) type Problem = (std::ops::Range<usize>, String, String);

/// Validates a `[roll]` section; `line` turns a span into a line number.
pub(crate) fn parse_roll(raw: &RawRoll, line: impl Fn(usize) -> usize) -> Result<Roll, Vec<Problem>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut problem = |span: std::ops::Range<usize>, field: &str, message: String| {
        problems.push((span, format!("roll.{field}"), message));
    };
    let (hosts, hosts_line) = match &raw.hosts {
        None => (HostSelector::All, None),
        Some(v) => {
            let selector = match v.get_ref() {
                toml::Value::String(s) if s == "all" => Some(HostSelector::All),
                toml::Value::String(s) => match s.split_once(':') {
                    Some(("group", g)) if !g.is_empty() => Some(HostSelector::Group(g.to_string())),
                    Some(("tag", t)) if !t.is_empty() => Some(HostSelector::Tag(t.to_string())),
                    _ => None,
                },
                toml::Value::Array(items) => {
                    let names: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(String::from)).collect();
                    names.filter(|n| !n.is_empty()).map(HostSelector::Hosts)
                }
                _ => None,
            };
            if selector.is_none() {
                problem(
                    v.span(),
                    "hosts",
                    format!("{} is not \"all\", a list of host names, \"group:NAME\" or \"tag:NAME\"", v.get_ref()),
                );
            }
            (selector.unwrap_or(HostSelector::All), Some(line(v.span().start)))
        }
    };
    let mut seconds = |value: &Option<Spanned<i64>>, field: &str, default: u64| match value {
        None => default,
        Some(v) => match u64::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => n,
            _ => {
                problem(v.span(), field, format!("{} must be a positive number of seconds", v.get_ref()));
                default
            }
        },
    };
    let hook_timeout_s = seconds(&raw.hook_timeout_s, "hook_timeout_s", 3600);
    let check_timeout_s = seconds(&raw.check_timeout_s, "check_timeout_s", 600);
    let mut problem = |span: std::ops::Range<usize>, field: &str, message: String| {
        problems.push((span, format!("roll.{field}"), message));
    };
    let mut command = |value: &Option<Spanned<String>>, field: &str| {
        let v = value.as_ref()?;
        if v.get_ref().trim().is_empty() {
            problem(v.span(), field, "an empty command".to_string());
            return None;
        }
        Some(v.get_ref().clone())
    };
    let hook = command(&raw.hook, "hook");
    let check = command(&raw.check, "check");
    let mut count = |value: &Option<Spanned<i64>>, field: &str, default: usize, min: i64| match value {
        None => default,
        Some(v) if *v.get_ref() >= min => usize::try_from(*v.get_ref()).unwrap_or(default),
        Some(v) => {
            let what = if min > 0 { "a positive number of hosts" } else { "a number of hosts" };
            problem(v.span(), field, format!("{} must be {what}", v.get_ref()));
            default
        }
    };
    let max_unavailable = count(&raw.max_unavailable, "max_unavailable", 1, 1);
    let canary = count(&raw.canary, "canary", 0, 0);
    let (reserve, reserve_line) = match &raw.reserve {
        None => (Reserve::None, None),
        Some(v) => (reserve_of(v, &mut problem).unwrap_or(Reserve::None), Some(line(v.span().start))),
    };
    let (redundancy_groups, redundancy_line) = match &raw.redundancy_groups {
        None => (Vec::new(), None),
        Some(groups) => {
            for group in groups.get_ref() {
                if group.len() < 2 {
                    problem(groups.span(), "redundancy_groups", format!("{group:?}: a group needs at least two hosts"));
                }
            }
            (groups.get_ref().clone(), Some(line(groups.span().start)))
        }
    };
    let on_host_failure = match &raw.on_host_failure {
        None => OnHostFailure::Stop,
        Some(v) => match v.get_ref().as_str() {
            "stop" => OnHostFailure::Stop,
            "skip" => OnHostFailure::Skip,
            other => {
                problem(v.span(), "on_host_failure", format!("{other:?} is not one of stop, skip"));
                OnHostFailure::Stop
            }
        },
    };
    let hook_sim_s = raw.hook_sim_s.as_ref().and_then(|v| {
        let s = *v.get_ref();
        if s >= 0.0 && s.is_finite() {
            Some(s)
        } else {
            problem(v.span(), "hook_sim_s", format!("{s} must be a number of seconds, 0 or more"));
            None
        }
    });
    let mut maintenance = BTreeMap::new();
    for (vm, behaviour) in &raw.maintenance {
        match behaviour.get_ref().parse::<Maintenance>() {
            Ok(m) => {
                maintenance.insert(vm.clone(), (m, Some(line(behaviour.span().start))));
            }
            Err(e) => problem(behaviour.span(), &format!("maintenance.{vm}"), e),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Roll {
        hosts,
        hosts_line,
        hook,
        hook_timeout_s,
        check,
        check_timeout_s,
        max_unavailable,
        reserve,
        reserve_line,
        redundancy_groups,
        redundancy_line,
        return_vms: raw.return_vms.unwrap_or(true),
        canary,
        on_host_failure,
        hook_sim_s,
        maintenance,
    })
}

fn reserve_of(
    v: &Spanned<toml::Value>,
    problem: &mut impl FnMut(std::ops::Range<usize>, &str, String),
) -> Option<Reserve> {
    let bad = |problem: &mut dyn FnMut(std::ops::Range<usize>, &str, String)| {
        problem(
            v.span(),
            "reserve",
            format!("{} is not \"none\", \"largest-host\" or {{ memory_mib = N, vcpus = N }}", v.get_ref()),
        );
        None
    };
    match v.get_ref() {
        toml::Value::String(s) if s == "none" => Some(Reserve::None),
        toml::Value::String(s) if s == "largest-host" => Some(Reserve::LargestHost),
        toml::Value::Table(t) => {
            let known = t.keys().all(|k| k == "memory_mib" || k == "vcpus");
            let number = |key: &str| t.get(key).map_or(Some(0), |n| n.as_integer().and_then(|n| u64::try_from(n).ok()));
            match (known, number("memory_mib"), number("vcpus").and_then(|n| u32::try_from(n).ok())) {
                (true, Some(memory_mib), Some(vcpus)) => Some(Reserve::Capacity { memory_mib, vcpus }),
                _ => bad(problem),
            }
        }
        _ => bad(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_plan_toml;

    fn roll(section: &str) -> Result<Roll, Vec<String>> {
        let text = format!("[plan]\nname = \"r\"\n\n{section}");
        parse_plan_toml("r.toml", &text)
            .map(|p| p.roll.expect("a roll"))
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_full_roll_section_parses_and_a_bare_one_takes_the_defaults() {
        let full = roll(
            "[roll]\nhosts = [\"b\", \"a\"]\nhook = \"upgrade $FERRY_HOST\"\nhook_timeout_s = 60\ncheck = \"true\"\n\
             max_unavailable = 2\nreserve = { memory_mib = 4096, vcpus = 4 }\nredundancy_groups = [[\"a\", \"b\"]]\n\
             return = false\ncanary = 1\non_host_failure = \"skip\"\nhook_sim_s = 300\n\n\
             [roll.maintenance]\ndb-1 = \"shutdown\"\nweb-1 = \"stay\"\n",
        )
        .expect("parses");
        assert_eq!(full.hosts, HostSelector::Hosts(vec!["b".into(), "a".into()]));
        assert_eq!((full.hosts_line, full.reserve_line, full.redundancy_line), (Some(5), Some(10), Some(11)));
        assert_eq!(full.reserve, Reserve::Capacity { memory_mib: 4096, vcpus: 4 });
        assert_eq!((full.max_unavailable, full.canary, full.return_vms), (2, 1, false));
        assert_eq!(
            (full.on_host_failure, full.hook_sim_s, full.hook_timeout_s),
            (OnHostFailure::Skip, Some(300.0), 60)
        );
        assert_eq!((full.behaviour_of("db-1"), full.behaviour_of("web-1")), (Maintenance::Shutdown, Maintenance::Stay));
        assert_eq!(full.behaviour_of("other"), Maintenance::Live);

        let bare = roll("[roll]\n").expect("parses");
        assert_eq!((bare.hosts, bare.reserve, bare.max_unavailable), (HostSelector::All, Reserve::None, 1));
        assert_eq!((bare.return_vms, bare.on_host_failure, bare.canary), (true, OnHostFailure::Stop, 0));
        for (selector, want) in [
            ("\"group:rack12\"", HostSelector::Group("rack12".into())),
            ("\"tag:ssd\"", HostSelector::Tag("ssd".into())),
        ] {
            assert_eq!(roll(&format!("[roll]\nhosts = {selector}\n")).expect("parses").hosts, want);
        }
        assert_eq!(roll("[roll]\nreserve = \"largest-host\"\n").expect("parses").reserve, Reserve::LargestHost);
    }

    #[test]
    fn every_bad_value_is_named_with_its_line_and_field() {
        for (section, want) in [
            ("hosts = \"rack12\"", "r.toml:5: roll.hosts: \"rack12\" is not \"all\""),
            ("hosts = []", "r.toml:5: roll.hosts:"),
            ("max_unavailable = 0", "r.toml:5: roll.max_unavailable: 0 must be a positive number of hosts"),
            ("canary = -1", "r.toml:5: roll.canary: -1 must be a number of hosts"),
            ("reserve = \"half\"", "r.toml:5: roll.reserve: \"half\" is not \"none\", \"largest-host\""),
            ("reserve = { memory = 1 }", "r.toml:5: roll.reserve:"),
            ("redundancy_groups = [[\"a\"]]", "r.toml:5: roll.redundancy_groups: [\"a\"]: a group needs at least two"),
            ("on_host_failure = \"retry\"", "r.toml:5: roll.on_host_failure: \"retry\" is not one of stop, skip"),
            ("hook = \" \"", "r.toml:5: roll.hook: an empty command"),
            ("hook_timeout_s = 0", "r.toml:5: roll.hook_timeout_s: 0 must be a positive number of seconds"),
            ("hook_sim_s = -1.0", "r.toml:5: roll.hook_sim_s: -1 must be a number of seconds"),
            ("[roll.maintenance]\ndb-1 = \"pause\"", "r.toml:6: roll.maintenance.db-1: \"pause\" is not one of live"),
        ] {
            let errors = roll(&format!("[roll]\n{section}\n")).expect_err(section);
            assert!(errors.iter().any(|e| e.starts_with(want)), "{section}: {errors:?}");
        }
        let text = "[plan]\nname = \"r\"\n[roll]\n[[move]]\nvm = \"a\"\nto = \"b\"\n";
        let errors = parse_plan_toml("r.toml", text).expect_err("a roll with moves");
        assert!(errors[0].to_string().contains("a roll moves what its hosts hold"), "{errors:?}");
    }
}
