//! The libvirt XML the lab defines: guests, storage pools, volumes. Pure text.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

use ferry_heartbeat::MemoryMix;

/// What a lab guest looks like.
#[derive(Debug, Clone)]
pub struct GuestSpec<'a> {
    /// Domain name.
    pub name: &'a str,
    /// Domain UUID.
    pub uuid: &'a str,
    /// Memory in MiB.
    pub mem_mib: u64,
    /// Rate at which the guest dirties memory, MiB/s.
    pub dirty_mib_s: f64,
    /// Working set the guest dirties and verifies, MiB.
    pub wss_mib: u64,
    /// What the working set holds, percent of pages zero, text and random.
    pub memory_mix: MemoryMix,
    /// Guest kernel.
    pub kernel: &'a Path,
    /// Guest initramfs (busybox and the guest workload).
    pub initrd: &'a Path,
    /// Serial console log, appended across migrations.
    pub serial_log: &'a Path,
    /// The guest's data disk.
    pub disk: GuestDisk<'a>,
}

/// A lab guest's data disk.
#[derive(Debug, Clone)]
pub enum GuestDisk<'a> {
    /// A qcow2 file in the host-local pool: must be copied when the guest moves.
    Local {
        /// Path of the volume.
        path: &'a Path,
    },
    /// An NBD export every host reaches: nothing to copy.
    Shared {
        /// Export name.
        export: &'a str,
        /// NBD server address: 127.0.0.1, or the lab bridge's with `--link`.
        address: Ipv4Addr,
        /// NBD server port.
        port: u16,
    },
}

/// The domain XML of a lab guest: TCG (nested KVM hangs guests here), direct kernel boot,
/// ACPI on (libvirt passes -no-acpi otherwise, which QEMU 10 refuses), and a crash or reboot
/// destroys the domain so that it shows instead of being hidden by a reboot.
pub fn domain(spec: &GuestSpec<'_>) -> String {
    let disk = match &spec.disk {
        GuestDisk::Local { path } => format!(
            "    <disk type='file' device='disk'>\n\
             \x20     <driver name='qemu' type='qcow2' cache='none'/>\n\
             \x20     <source file='{}'/>\n\
             \x20     <target dev='vda' bus='virtio'/>\n\
             \x20   </disk>\n",
            escape(&path.display().to_string())
        ),
        GuestDisk::Shared { export, address, port } => format!(
            "    <disk type='network' device='disk'>\n\
             \x20     <driver name='qemu' type='raw' cache='none'/>\n\
             \x20     <source protocol='nbd' name='{}'>\n\
             \x20       <host name='{address}' port='{port}'/>\n\
             \x20     </source>\n\
             \x20     <target dev='vda' bus='virtio'/>\n\
             \x20   </disk>\n",
            escape(export)
        ),
    };
    let mut xml = String::new();
    let _ = write!(
        xml,
        "<domain type='qemu'>\n\
         \x20 <name>{name}</name>\n\
         \x20 <uuid>{uuid}</uuid>\n\
         \x20 <memory unit='MiB'>{mem}</memory>\n\
         \x20 <vcpu>1</vcpu>\n\
         \x20 <os>\n\
         \x20   <type arch='x86_64' machine='pc'>hvm</type>\n\
         \x20   <kernel>{kernel}</kernel>\n\
         \x20   <initrd>{initrd}</initrd>\n\
         \x20   <cmdline>console=ttyS0 panic=-1 quiet ferry.dirty={dirty} ferry.wss={wss} ferry.mix={mix} ferry.disk=/dev/vda</cmdline>\n\
         \x20 </os>\n\
         \x20 <features><acpi/></features>\n\
         \x20 <on_poweroff>destroy</on_poweroff>\n\
         \x20 <on_reboot>destroy</on_reboot>\n\
         \x20 <on_crash>destroy</on_crash>\n\
         \x20 <devices>\n\
         \x20   <emulator>/usr/bin/qemu-system-x86_64</emulator>\n\
         {disk}\
         \x20   <serial type='file'>\n\
         \x20     <source path='{serial}' append='on'/>\n\
         \x20     <target port='0'/>\n\
         \x20   </serial>\n\
         \x20   <memballoon model='none'/>\n\
         \x20 </devices>\n\
         </domain>\n",
        name = escape(spec.name),
        uuid = spec.uuid,
        mem = spec.mem_mib,
        kernel = escape(&spec.kernel.display().to_string()),
        initrd = escape(&spec.initrd.display().to_string()),
        dirty = spec.dirty_mib_s,
        wss = spec.wss_mib,
        mix = spec.memory_mix,
        serial = escape(&spec.serial_log.display().to_string()),
    );
    xml
}

/// A directory storage pool.
pub fn dir_pool(name: &str, dir: &Path) -> String {
    format!(
        "<pool type='dir'><name>{}</name><target><path>{}</path></target></pool>",
        escape(name),
        escape(&dir.display().to_string())
    )
}

/// A qcow2 volume of `mib` MiB.
pub fn qcow2_volume(name: &str, mib: u64) -> String {
    format!(
        "<volume><name>{}</name><capacity unit='MiB'>{mib}</capacity>\
         <target><format type='qcow2'/></target></volume>",
        escape(name)
    )
}

/// Escapes text for an XML attribute or element.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_xml_carries_workload_settings_and_escapes_paths() {
        let xml = domain(&GuestSpec {
            name: "vm-1",
            uuid: "6c1d1b53-3a0e-4a5b-9f7e-2f1b8c9d0e1f",
            mem_mib: 128,
            dirty_mib_s: 10.0,
            wss_mib: 32,
            memory_mix: MemoryMix { zero: 10, text: 60, random: 30 },
            kernel: Path::new("/lab/vmlinuz"),
            initrd: Path::new("/lab/initrd"),
            serial_log: Path::new("/lab/a&b/serial.log"),
            disk: GuestDisk::Shared { export: "vm-1", address: Ipv4Addr::new(10, 237, 96, 200), port: 20010 },
        });
        assert!(xml.contains("ferry.dirty=10 ferry.wss=32 ferry.mix=10:60:30 "));
        assert!(xml.contains("/lab/a&amp;b/serial.log"));
        assert!(xml.contains("<acpi/>"));
        assert!(xml.contains("protocol='nbd' name='vm-1'"));
        assert!(xml.contains("<host name='10.237.96.200' port='20010'/>"));
        assert!(xml.contains("<on_reboot>destroy</on_reboot>"));
    }
}
