//! The example files in `examples/` (shipped in the Debian package) parse.

use ferry_plan::{parse_cluster, parse_plan_toml};

#[test]
fn the_example_cluster_file_and_plans_parse() {
    let cluster = parse_cluster("examples/cluster.toml", include_str!("../../../examples/cluster.toml"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(cluster.hosts.len(), 3);
    for (file, text) in [
        ("examples/drain-host-a.toml", include_str!("../../../examples/drain-host-a.toml")),
        ("examples/roll-all.toml", include_str!("../../../examples/roll-all.toml")),
    ] {
        parse_plan_toml(file, text).unwrap_or_else(|e| panic!("{file}: {e:?}"));
    }
}
