//! Reading and rewriting libvirt domain XML, and ferry's metadata element. Pure text.

use std::collections::BTreeMap;

use ferry_model::{Claim, Metadata, Phase, Ticket};

/// The namespace of ferry's metadata element in domain XML.
pub const METADATA_NS: &str = "urn:ferry:metadata:1";
/// The prefix libvirt writes for it.
pub const METADATA_PREFIX: &str = "ferry";

/// The start of a claim ticket's namespace ([`ferry_model::Ticket`]); [`ticket_ns`] adds its
/// owner and run, so that each ticket is an element of its own.
pub const TICKET_NS: &str = "urn:ferry:ticket:1:";
/// The prefix libvirt writes for a ticket.
pub const TICKET_PREFIX: &str = "ferry-ticket";

/// The namespace of the operators' tags on a domain (`ferry tag`): an element of its own,
/// so that a move's metadata never touches them.
pub const TAGS_NS: &str = "urn:ferry:tags:1";
/// The prefix libvirt writes for it.
pub const TAGS_PREFIX: &str = "ferry-tags";

/// What ferry needs from a domain's XML.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainDesc {
    /// Domain name.
    pub name: String,
    /// UUID.
    pub uuid: String,
    /// Virtualization type (`kvm`, `qemu`).
    pub virt_type: String,
    /// Memory, KiB.
    pub memory_kib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// Guest CPU model, if named.
    pub cpu_model: Option<String>,
    /// Whether its memory is locked in host RAM (`<memoryBacking><locked/>`).
    pub memory_locked: bool,
    /// Disks (devices of kind `disk`; CD-ROMs are ignored).
    pub disks: Vec<DiskXml>,
    /// Interfaces: (MAC, network or bridge).
    pub nics: Vec<(String, Option<String>)>,
}

/// A disk as the domain XML declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskXml {
    /// `file`, `block`, `network`, `volume`.
    pub kind: String,
    /// Guest device name.
    pub target: String,
    /// Driver format (`qcow2`, `raw`).
    pub format: String,
    /// File or block path.
    pub path: Option<String>,
    /// Network protocol, export name and servers (`host:port`).
    pub network: Option<(String, String, Vec<String>)>,
    /// Pool and volume for `volume` disks.
    pub pool_volume: Option<(String, String)>,
}

/// Parses the parts of a domain XML ferry uses.
pub fn parse_domain(xml: &str) -> Result<DomainDesc, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let root = doc.root_element();
    let child_text = |name: &str| root.children().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::trim);
    let memory_kib = root
        .children()
        .find(|n| n.has_tag_name("memory"))
        .map(|n| {
            let value: u64 = n.text().unwrap_or("0").trim().parse().unwrap_or(0);
            match n.attribute("unit").unwrap_or("KiB") {
                "b" | "bytes" => value / 1024,
                "MiB" | "M" => value * 1024,
                "GiB" | "G" => value * 1024 * 1024,
                _ => value,
            }
        })
        .unwrap_or(0);
    let cpu_model = root
        .children()
        .find(|n| n.has_tag_name("cpu"))
        .and_then(|cpu| cpu.children().find(|n| n.has_tag_name("model")))
        .and_then(|m| m.text())
        .map(|s| s.trim().to_string());
    let mut disks = Vec::new();
    let mut nics = Vec::new();
    if let Some(devices) = root.children().find(|n| n.has_tag_name("devices")) {
        for disk in devices.children().filter(|n| n.has_tag_name("disk")) {
            if disk.attribute("device").unwrap_or("disk") != "disk" {
                continue;
            }
            let kind = disk.attribute("type").unwrap_or("file").to_string();
            let source = disk.children().find(|n| n.has_tag_name("source"));
            let target = disk
                .children()
                .find(|n| n.has_tag_name("target"))
                .and_then(|t| t.attribute("dev"))
                .unwrap_or("")
                .to_string();
            let format = disk
                .children()
                .find(|n| n.has_tag_name("driver"))
                .and_then(|d| d.attribute("type"))
                .unwrap_or("raw")
                .to_string();
            let path = source.and_then(|s| s.attribute("file").or(s.attribute("dev"))).map(String::from);
            let network = source.filter(|_| kind == "network").map(|s| {
                let servers = s
                    .children()
                    .filter(|n| n.has_tag_name("host"))
                    .map(|h| format!("{}:{}", h.attribute("name").unwrap_or(""), h.attribute("port").unwrap_or("")))
                    .collect();
                (
                    s.attribute("protocol").unwrap_or("").to_string(),
                    s.attribute("name").unwrap_or("").to_string(),
                    servers,
                )
            });
            let pool_volume = source
                .filter(|_| kind == "volume")
                .and_then(|s| Some((s.attribute("pool")?.to_string(), s.attribute("volume")?.to_string())));
            disks.push(DiskXml { kind, target, format, path, network, pool_volume });
        }
        for nic in devices.children().filter(|n| n.has_tag_name("interface")) {
            let mac = nic
                .children()
                .find(|n| n.has_tag_name("mac"))
                .and_then(|m| m.attribute("address"))
                .unwrap_or("")
                .to_string();
            let network = nic
                .children()
                .find(|n| n.has_tag_name("source"))
                .and_then(|s| s.attribute("network").or(s.attribute("bridge")))
                .map(String::from);
            nics.push((mac, network));
        }
    }
    Ok(DomainDesc {
        name: child_text("name").unwrap_or("").to_string(),
        uuid: child_text("uuid").unwrap_or("").to_string(),
        virt_type: root.attribute("type").unwrap_or("kvm").to_string(),
        memory_locked: root
            .children()
            .find(|n| n.has_tag_name("memoryBacking"))
            .is_some_and(|b| b.children().any(|n| n.has_tag_name("locked"))),
        memory_kib,
        vcpus: child_text("vcpu").and_then(|v| v.parse().ok()).unwrap_or(1),
        cpu_model,
        disks,
        nics,
    })
}

/// Rewrites the `file` attribute of disk sources: each `(old, new)` pair points a disk at
/// its new volume. Everything else in the XML is kept byte for byte.
pub fn rewrite_disk_paths(xml: &str, moves: &[(String, String)]) -> Result<String, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("domain XML: {e}"))?;
    let mut edits: Vec<(std::ops::Range<usize>, &str)> = Vec::new();
    for source in doc.descendants().filter(|n| n.has_tag_name("source")) {
        let Some(parent) = source.parent_element() else { continue };
        if !parent.has_tag_name("disk") {
            continue;
        }
        if let Some(attr) = source.attributes().find(|a| a.name() == "file") {
            if let Some((_, new)) = moves.iter().find(|(old, _)| old == attr.value()) {
                edits.push((attr.range_value(), new.as_str()));
            }
        }
    }
    if edits.len() != moves.len() {
        return Err(format!("found {} of {} disk paths to rewrite", edits.len(), moves.len()));
    }
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.start));
    let mut out = xml.to_string();
    for (range, new) in edits {
        out.replace_range(range, &escape(new));
    }
    Ok(out)
}

/// ferry's metadata element, as `virDomainSetMetadata` takes it (libvirt adds the namespace).
/// The claim, when there is one, is two more attributes.
pub fn metadata_xml(metadata: &Metadata) -> String {
    let claim = metadata.claim.as_ref().map_or(String::new(), |c| {
        format!(" claim-owner='{}' claim-refreshed-ms='{}'", escape(&c.owner), c.refreshed_ms)
    });
    format!(
        "<run id='{}' original-host='{}' phase='{}'{claim}/>",
        escape(&metadata.run_id),
        escape(&metadata.original_host),
        metadata.phase.name()
    )
}

/// Parses ferry's metadata element as `virDomainGetMetadata` returns it. Metadata written
/// before claims existed has no claim.
pub fn parse_metadata(xml: &str) -> Result<Metadata, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("ferry metadata: {e}"))?;
    metadata_of(doc.root_element())
}

fn metadata_of(run: roxmltree::Node<'_, '_>) -> Result<Metadata, String> {
    let attr = |name: &str| run.attribute(name).ok_or_else(|| format!("ferry metadata: no {name}"));
    let claim = match (run.attribute("claim-owner"), run.attribute("claim-refreshed-ms")) {
        (Some(owner), Some(ms)) => Some(Claim {
            owner: owner.to_string(),
            refreshed_ms: ms.parse().map_err(|e| format!("ferry metadata: claim-refreshed-ms {ms:?}: {e}"))?,
        }),
        _ => None,
    };
    Ok(Metadata {
        run_id: attr("id")?.to_string(),
        original_host: attr("original-host")?.to_string(),
        phase: attr("phase")?.parse::<Phase>()?,
        claim,
    })
}

/// The namespace of `owner`'s ticket for `run_id`: [`TICKET_NS`], then both, percent-encoded
/// but for letters, digits and `-._`, joined by `:`.
pub fn ticket_ns(owner: &str, run_id: &str) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    format!("{TICKET_NS}{}:{}", encode(owner), encode(run_id))
}

/// A ticket's element, as `virDomainSetMetadata` takes it (in the namespace of [`ticket_ns`]).
pub fn ticket_xml(ticket: &Ticket) -> String {
    format!(
        "<ticket run='{}' owner='{}' written-ms='{}'/>",
        escape(&ticket.run_id),
        escape(&ticket.owner),
        ticket.written_ms
    )
}

/// What a domain's XML says of its claim.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClaimLine {
    /// The tickets in line, in the order they were written, each with its namespace. A
    /// ticket ferry cannot parse is left out.
    pub tickets: Vec<(String, Ticket)>,
    /// ferry's metadata element.
    pub metadata: Option<Metadata>,
}

/// Reads a domain's XML for its [`ClaimLine`]; ferry metadata it cannot parse is an error.
pub fn parse_claim_line(domain_xml: &str) -> Result<ClaimLine, String> {
    let doc = roxmltree::Document::parse(domain_xml).map_err(|e| format!("domain XML: {e}"))?;
    let Some(metadata) = doc.root_element().children().find(|n| n.has_tag_name("metadata")) else {
        return Ok(ClaimLine::default());
    };
    let mut line = ClaimLine::default();
    for element in metadata.children().filter(roxmltree::Node::is_element) {
        let name = element.tag_name();
        match name.namespace() {
            Some(METADATA_NS) if name.name() == "run" => line.metadata = Some(metadata_of(element)?),
            Some(ns) if ns.starts_with(TICKET_NS) && name.name() == "ticket" => {
                let ticket = (|| {
                    Some(Ticket {
                        run_id: element.attribute("run")?.to_string(),
                        owner: element.attribute("owner")?.to_string(),
                        written_ms: element.attribute("written-ms")?.parse().ok()?,
                    })
                })();
                line.tickets.extend(ticket.map(|t| (ns.to_string(), t)));
            }
            _ => {}
        }
    }
    Ok(line)
}

/// The tags element, as `virDomainSetMetadata` takes it.
pub fn tags_xml(tags: &BTreeMap<String, String>) -> String {
    let each: String =
        tags.iter().map(|(key, value)| format!("<tag key='{}' value='{}'/>", escape(key), escape(value))).collect();
    format!("<tags>{each}</tags>")
}

/// Parses the tags element as `virDomainGetMetadata` returns it.
pub fn parse_tags(xml: &str) -> Result<BTreeMap<String, String>, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("ferry tags: {e}"))?;
    Ok(doc
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("tag"))
        .filter_map(|n| Some((n.attribute("key")?.to_string(), n.attribute("value")?.to_string())))
        .collect())
}

/// `text` safe inside an element or a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('\'', "&apos;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<domain type='qemu'>
  <name>vm-1</name>
  <uuid>6c1d1b53-3a0e-4a5b-9f7e-2f1b8c9d0e1f</uuid>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <cpu mode='custom'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/lab/hosts/host-a/pool/vm-1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='nbd' name='vm-2'><host name='127.0.0.1' port='20010'/></source>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/></disk>
    <interface type='network'><mac address='52:54:00:aa:bb:cc'/><source network='default'/></interface>
    <serial type='file'><source path='/lab/vms/vm-1/serial.log' append='on'/></serial>
  </devices>
</domain>"#;

    #[test]
    fn parses_what_ferry_needs() {
        let d = parse_domain(XML).expect("parses");
        assert_eq!(d.name, "vm-1");
        assert_eq!(d.virt_type, "qemu");
        assert!(!d.memory_locked);
        let locked = XML.replacen("<devices>", "<memoryBacking><locked/></memoryBacking>\n  <devices>", 1);
        assert!(parse_domain(&locked).expect("parses").memory_locked);
        assert_eq!(d.memory_kib, 262_144);
        assert_eq!(d.cpu_model.as_deref(), Some("qemu64"));
        assert_eq!(d.disks.len(), 2, "the CD-ROM is not a disk to move");
        assert_eq!(d.disks[0].path.as_deref(), Some("/lab/hosts/host-a/pool/vm-1.qcow2"));
        assert_eq!(d.disks[0].format, "qcow2");
        assert_eq!(d.disks[1].network, Some(("nbd".into(), "vm-2".into(), vec!["127.0.0.1:20010".into()])));
        assert_eq!(d.nics, vec![("52:54:00:aa:bb:cc".into(), Some("default".into()))]);
    }

    #[test]
    fn rewrites_only_the_named_disk_path() {
        let moves =
            vec![("/lab/hosts/host-a/pool/vm-1.qcow2".to_string(), "/lab/hosts/host-b/pool/vm-1.qcow2".to_string())];
        let out = rewrite_disk_paths(XML, &moves).expect("rewrites");
        assert!(out.contains("<source file='/lab/hosts/host-b/pool/vm-1.qcow2'/>"));
        assert!(out.contains("/iso/x.iso"), "other sources untouched");
        assert!(out.contains("/lab/vms/vm-1/serial.log"), "serial path is not a disk");
        assert_eq!(out.len(), XML.len(), "nothing else changed");

        let missing = vec![("/nope".to_string(), "/x".to_string())];
        assert!(rewrite_disk_paths(XML, &missing).is_err());
    }

    #[test]
    fn tags_round_trip_escaped() {
        let tags: BTreeMap<String, String> =
            [("maintenance".to_string(), "shutdown".to_string()), ("note".to_string(), "a'b<c".to_string())].into();
        let xml = tags_xml(&tags).replace("<tags>", &format!("<tags xmlns='{TAGS_NS}'>"));
        assert_eq!(parse_tags(&xml), Ok(tags));
        assert_eq!(parse_tags(&format!("<tags xmlns='{TAGS_NS}'/>")), Ok(BTreeMap::new()));
    }

    #[test]
    fn metadata_round_trips_with_and_without_a_claim() {
        let old =
            Metadata { run_id: "r-1".into(), original_host: "host-a".into(), phase: Phase::Transferring, claim: None };
        let claimed = Metadata {
            claim: Some(Claim { owner: "ops-1:4242".into(), refreshed_ms: 1_796_500_565_891 }),
            ..old.clone()
        };
        for m in [old, claimed] {
            let xml = metadata_xml(&m).replace("<run ", &format!("<run xmlns='{METADATA_NS}' "));
            assert_eq!(parse_metadata(&xml), Ok(m));
        }
    }

    #[test]
    fn a_domain_xml_gives_its_tickets_in_written_order_and_ferrys_metadata() {
        let ticket = |run: &str, owner: &str| Ticket { run_id: run.into(), owner: owner.into(), written_ms: 17 };
        let (first, second) = (ticket("r-2", "ops-b:9"), ticket("r-1", "ops-a:4'2"));
        let element = |t: &Ticket| {
            ticket_xml(t).replace("<ticket ", &format!("<t:ticket xmlns:t='{}' ", ticket_ns(&t.owner, &t.run_id)))
        };
        let run = format!("<ferry:run xmlns:ferry='{METADATA_NS}' id='r-1' original-host='host-a' phase='prepared'/>");
        let xml = format!(
            "<domain><name>vm</name><metadata>{}<x:other xmlns:x='urn:x'/>{run}<t:ticket xmlns:t='{TICKET_NS}q:r' \
             run='r-3'/>{}</metadata></domain>",
            element(&first),
            element(&second)
        );
        let line = parse_claim_line(&xml).expect("parses");
        let tickets: Vec<Ticket> = line.tickets.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(tickets, vec![first.clone(), second.clone()]);
        assert_eq!(
            line.tickets[1].0, "urn:ferry:ticket:1:ops-a%3A4%272:r-1",
            "the namespace names owner and run, encoded"
        );
        assert_eq!(line.metadata.map(|m| (m.run_id, m.phase)), Some(("r-1".to_string(), Phase::Prepared)));
        assert_eq!(parse_claim_line("<domain><name>vm</name></domain>"), Ok(ClaimLine::default()));
    }

    #[test]
    fn metadata_written_before_claims_existed_still_parses() {
        let xml = format!("<run xmlns='{METADATA_NS}' id='r-0' original-host='host-b' phase='finalized'/>");
        let m = parse_metadata(&xml).expect("old metadata parses");
        assert_eq!((m.run_id.as_str(), m.phase, m.claim), ("r-0", Phase::Finalized, None));
        let bad = xml.replace("/>", " claim-owner='x:1' claim-refreshed-ms='soon'/>");
        assert!(parse_metadata(&bad).is_err(), "a claim's time must be a number");
    }
}
