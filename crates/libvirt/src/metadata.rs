//! ferry's metadata on a domain (run id, original host, phase), written on the live domain
//! and its persistent definition so that libvirt itself knows what ferry is doing.

use ferry_model::Metadata;
use virt::domain::Domain;
use virt::sys;

use crate::conn::msg;
use crate::domxml::{metadata_xml, parse_metadata, METADATA_NS, METADATA_PREFIX};

fn affect(domain: &Domain) -> u32 {
    let mut flags = sys::VIR_DOMAIN_AFFECT_CONFIG;
    if domain.is_active().unwrap_or(false) {
        flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    flags
}

/// Writes ferry's metadata element.
pub(crate) fn write_metadata(domain: &Domain, metadata: &Metadata) -> Result<(), String> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    domain
        .set_metadata(kind, Some(&metadata_xml(metadata)), Some(METADATA_PREFIX), Some(METADATA_NS), affect(domain))
        .map_err(msg)
}

/// Removes ferry's metadata element.
pub(crate) fn clear_metadata(domain: &Domain) -> Result<(), String> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    domain.set_metadata(kind, None, None, Some(METADATA_NS), affect(domain)).map_err(msg)
}

/// Reads ferry's metadata element; none when the domain has none.
pub(crate) fn read_metadata(domain: &Domain) -> Result<Option<Metadata>, String> {
    let kind = i32::try_from(sys::VIR_DOMAIN_METADATA_ELEMENT).expect("small constant");
    let flags =
        if domain.is_active().unwrap_or(false) { sys::VIR_DOMAIN_AFFECT_LIVE } else { sys::VIR_DOMAIN_AFFECT_CONFIG };
    match domain.metadata(kind, Some(METADATA_NS), flags) {
        Ok(xml) => parse_metadata(&xml).map(Some),
        Err(e) if e.code().is(virt::error::ErrorNumber::NoDomainMetadata) => Ok(None),
        Err(e) => Err(msg(e)),
    }
}
