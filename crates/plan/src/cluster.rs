//! Cluster files: the hosts ferry may touch.
//!
//! ```toml
//! [[host]]
//! name = "host-a"
//! uri = "qemu+tls://10.0.0.1/system?pkipath=/etc/pki/ferry"   # qemu+tls, qemu+ssh, qemu+tcp, ...
//! migration_uri = "tcp://10.0.0.1"   # where the target listens for migration streams
//! group = "rack12"
//! tags = ["ssd"]
//! link_mib_s = 1000
//! cpu_overcommit = 4.0
//! memory_overcommit = 1.0
//! maintenance = false
//! shared_pools = ["nfs"]
//! parallel_connections = 4           # at most this many in its migrations (0: one stream)
//! compression = "zstd"                # the only compression its migrations may use
//! compression_level = 3               # at most this level
//! zerocopy = false                    # no zero-copy sends
//! one_stream_mib_s = 1200             # what one migration stream moves from it: bounds each
//!                                     # estimate; transport = "auto" compresses below it
//! ```

use std::collections::HashMap;

use ferry_model::{ClusterSpec, Compression, HostSpec, StreamLimits, Transport};
use serde::Deserialize;
use toml::Spanned;

use crate::{line_of, toml_error, InputError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default)]
    host: Vec<Spanned<RawHost>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    uri: Spanned<String>,
    migration_uri: Option<Spanned<String>>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    link_mib_s: Option<Spanned<i64>>,
    cpu_overcommit: Option<Spanned<f64>>,
    memory_overcommit: Option<Spanned<f64>>,
    #[serde(default)]
    maintenance: bool,
    #[serde(default)]
    shared_pools: Vec<String>,
    parallel_connections: Option<Spanned<i64>>,
    compression: Option<Spanned<String>>,
    compression_level: Option<Spanned<i64>>,
    zerocopy: Option<bool>,
    one_stream_mib_s: Option<Spanned<i64>>,
}

/// Parses and validates a cluster file. All problems are returned at once. Each host's
/// transport is its URI's (`HostSpec::transport`): one libvirt does not know is refused, and
/// so is a TLS host whose migration URI names no address.
pub fn parse_cluster(file: &str, text: &str) -> Result<ClusterSpec, Vec<InputError>> {
    let raw: RawCluster = toml::from_str(text).map_err(|e| vec![toml_error(file, text, &e)])?;
    let mut errors = Vec::new();
    let error = |span: std::ops::Range<usize>, field: String, message: String| InputError {
        file: file.to_string(),
        line: Some(line_of(text, span.start)),
        field: Some(field),
        message,
    };
    if raw.host.is_empty() {
        errors.push(InputError {
            file: file.to_string(),
            line: None,
            field: Some("host".into()),
            message: "no hosts: add at least one [[host]] with a name and a uri".into(),
        });
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut hosts = Vec::new();
    for (i, spanned) in raw.host.iter().enumerate() {
        let host = spanned.get_ref();
        let field = |name: &str| format!("host[{i}].{name}");
        let name = host.name.get_ref().trim().to_string();
        if name.is_empty() {
            errors.push(error(host.name.span(), field("name"), "must not be empty".into()));
        } else if let Some(first) = seen.get(&name) {
            errors.push(error(
                host.name.span(),
                field("name"),
                format!("{name:?} is already the name of host[{first}]"),
            ));
        } else {
            seen.insert(name.clone(), i);
        }
        let uri = host.uri.get_ref();
        let transport = if uri.contains("://") {
            Transport::of_uri(uri).map_err(|e| error(host.uri.span(), field("uri"), e))
        } else {
            Err(error(
                host.uri.span(),
                field("uri"),
                format!("{uri:?} is not a libvirt URI (such as qemu+tls://HOST/system)"),
            ))
        };
        let transport = transport.map_err(|e| errors.push(e)).ok();
        if let Some(pkipath) = query_param(uri, "pkipath") {
            if !pkipath.starts_with('/') {
                errors.push(error(
                    host.uri.span(),
                    field("uri"),
                    format!("pkipath {pkipath:?} must be absolute: every host's libvirtd reads it too"),
                ));
            }
        }
        if let Some(m) = &host.migration_uri {
            match m.get_ref().strip_prefix("tcp://") {
                None => errors.push(error(
                    m.span(),
                    field("migration_uri"),
                    format!("{:?} must look like tcp://ADDRESS", m.get_ref()),
                )),
                // QEMU checks the target's certificate against the address it connects to.
                Some("") if transport == Some(Transport::Tls) => errors.push(error(
                    m.span(),
                    field("migration_uri"),
                    "must name the address (tcp://ADDRESS): a TLS migration checks the target's certificate against it"
                        .into(),
                )),
                Some(_) => {}
            }
        }
        let link = match &host.link_mib_s {
            Some(l) if *l.get_ref() <= 0 => {
                errors.push(error(
                    l.span(),
                    field("link_mib_s"),
                    format!("{} must be a positive bandwidth in MiB/s", l.get_ref()),
                ));
                None
            }
            Some(l) => u64::try_from(*l.get_ref()).ok(),
            None => None,
        };
        let mut ratio = |value: &Option<Spanned<f64>>, name: &str| match value {
            Some(v) if !(*v.get_ref() > 0.0 && v.get_ref().is_finite()) => {
                errors.push(error(v.span(), field(name), format!("{} must be a positive ratio", v.get_ref())));
                1.0
            }
            Some(v) => *v.get_ref(),
            None => 1.0,
        };
        let cpu_overcommit = ratio(&host.cpu_overcommit, "cpu_overcommit");
        let memory_overcommit = ratio(&host.memory_overcommit, "memory_overcommit");
        let count = |value: &Option<Spanned<i64>>, name: &str, errors: &mut Vec<InputError>| {
            let v = value.as_ref()?;
            let n = u32::try_from(*v.get_ref()).ok();
            if n.is_none() {
                errors.push(error(v.span(), field(name), format!("{} is negative", v.get_ref())));
            }
            n
        };
        let mut stream = StreamLimits {
            parallel_connections: count(&host.parallel_connections, "parallel_connections", &mut errors),
            compression_level: count(&host.compression_level, "compression_level", &mut errors),
            zerocopy: host.zerocopy,
            compression: None,
            one_stream_mib_s: None,
        };
        if let Some(rate) = &host.one_stream_mib_s {
            match u64::try_from(*rate.get_ref()) {
                Ok(r) if r > 0 => stream.one_stream_mib_s = Some(r),
                _ => errors.push(error(
                    rate.span(),
                    field("one_stream_mib_s"),
                    format!("{} is not positive", rate.get_ref()),
                )),
            }
        }
        if let Some(c) = &host.compression {
            match c.get_ref().parse::<Compression>() {
                Ok(c) => stream.compression = Some(c),
                Err(e) => errors.push(error(c.span(), field("compression"), e)),
            }
        }
        hosts.push(HostSpec {
            name,
            uri: uri.clone(),
            migration_uri: host.migration_uri.as_ref().map(|m| m.get_ref().clone()),
            group: host.group.clone().unwrap_or_else(|| "default".into()),
            tags: host.tags.clone(),
            link_mib_s: link,
            cpu_overcommit,
            memory_overcommit,
            maintenance: host.maintenance,
            shared_pools: host.shared_pools.clone(),
            stream,
        });
    }
    if errors.is_empty() {
        Ok(ClusterSpec { hosts })
    } else {
        Err(errors)
    }
}

/// The value of `name` in a URI's query (`?a=1&name=VALUE`), as written.
fn query_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &[&str]) {
        match parse_cluster("c.toml", text) {
            Ok(c) => assert!(expect.is_empty(), "expected errors {expect:?}, parsed {c:?}"),
            Err(errors) => {
                let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
                assert_eq!(got.len(), expect.len(), "{got:#?}");
                for (g, e) in got.iter().zip(expect) {
                    assert!(g.starts_with(e), "{g:?} does not start with {e:?}");
                }
            }
        }
    }

    #[test]
    fn a_good_file_parses_with_defaults() {
        let c = parse_cluster(
            "c.toml",
            "[[host]]\nname = \"a\"\nuri = \"qemu+tcp://127.0.0.1:1/system\"\nlink_mib_s = 100\n",
        )
        .expect("parses");
        assert_eq!(c.hosts[0].group, "default");
        assert_eq!(c.hosts[0].link_mib_s, Some(100));
        assert_eq!(c.hosts[0].memory_overcommit, 1.0);
    }

    #[test]
    fn every_problem_is_reported_with_line_and_field() {
        check(
            "[[host]]\nname = \"a\"\nuri = \"nope\"\n\n[[host]]\nname = \"a\"\nuri = \"qemu:///system\"\nlink_mib_s = 0\n",
            &[
                "c.toml:3: host[0].uri: \"nope\" is not a libvirt URI",
                "c.toml:6: host[1].name: \"a\" is already the name of host[0]",
                "c.toml:8: host[1].link_mib_s: 0 must be a positive",
            ],
        );
        check("[[host]]\nname = \"a\"\nuri = \"q:///\"\ncolour = 1\n", &["c.toml:4: unknown field `colour`"]);
        check("[[host]\n", &["c.toml:1:"]);
        check("", &["c.toml: host: no hosts"]);
        check("[[host]]\nname = \"a\"\nuri = 3\n", &["c.toml:3:"]);
        check(
            "[[host]]\nname = \"a\"\nuri = \"qemu:///system\"\ncompression = \"lz4\"\nparallel_connections = -2\n",
            &[
                "c.toml:5: host[0].parallel_connections: -2 is negative",
                "c.toml:4: host[0].compression: \"lz4\" is not one of none, zstd, zlib",
            ],
        );
    }

    #[test]
    fn a_host_bounds_the_streams_of_its_migrations() {
        let c = parse_cluster(
            "c.toml",
            "[[host]]\nname = \"a\"\nuri = \"qemu:///system\"\nparallel_connections = 2\ncompression = \"none\"\n\
             [[host]]\nname = \"b\"\nuri = \"qemu+tcp://b/system\"\n",
        )
        .expect("parses");
        let limits = c.hosts[0].stream;
        assert_eq!((limits.parallel_connections, limits.compression), (Some(2), Some(Compression::None)));
        let policy = crate::Policy {
            stream: ferry_model::StreamOptions {
                parallel_connections: 8,
                compression: Compression::Zstd,
                ..Default::default()
            },
            ..crate::Policy::default()
        };
        let between = policy.stream_between(&c.hosts[1], &c.hosts[0]);
        assert_eq!((between.parallel_connections, between.compression), (2, Compression::None));
        assert_eq!(policy.stream_between(&c.hosts[1], &c.hosts[1]), policy.stream);
    }

    #[test]
    fn a_transport_is_one_libvirt_knows_and_tls_names_its_migration_address() {
        let host = |uri: &str, migration: &str| {
            format!("[[host]]\nname = \"a\"\nuri = \"{uri}\"\nmigration_uri = \"{migration}\"\n")
        };
        check(&host("qemu+tls://10.0.0.1/system?pkipath=/etc/pki/ferry", "tcp://10.0.0.1"), &[]);
        check(&host("qemu+libssh://root@10.0.0.1:22/system?keyfile=/k", "tcp://10.0.0.1"), &[]);
        check(
            &host("qemu+tsl://10.0.0.1/system", "tcp://10.0.0.1"),
            &["c.toml:3: host[0].uri: \"tsl\" is not a libvirt transport"],
        );
        check(
            &host("qemu+tls://h/system?pkipath=pki", "tcp://h"),
            &["c.toml:3: host[0].uri: pkipath \"pki\" must be absolute"],
        );
        check(&host("qemu+tls://h/system", "tcp://"), &["c.toml:4: host[0].migration_uri: must name the address"]);
        check(&host("qemu+tcp://h/system", "tcp://"), &[]);
        check(
            &host("qemu+tls://h/system", "tls://h"),
            &["c.toml:4: host[0].migration_uri: \"tls://h\" must look like tcp://ADDRESS"],
        );
        let parsed = parse_cluster("c.toml", &host("qemu+tls://h:16514/system", "tcp://h")).expect("parses");
        assert_eq!(parsed.hosts[0].transport(), Transport::Tls);
        assert_eq!(query_param("q+tls://h/s?a=1&pkipath=/p&b=2", "pkipath"), Some("/p"));
        assert_eq!(query_param("q+tls://h/s?xpkipath=/p", "pkipath"), None);
    }
}
