//! The lab guests' boot image: a Debian cloud kernel and an initramfs holding busybox, the
//! virtio disk modules and the `ferry-guest` workload.
//!
//! Everything is cached in one directory shared by all labs (and by tests running in parallel):
//!
//! ```text
//! CACHE/lock                         flock(2) held while checking or building
//! CACHE/kernel/vmlinuz               from the linux-image package apt-cache names
//! CACHE/kernel/modules/NAME.ko       virtio disk modules and their dependencies
//! CACHE/kernel/modules.load          their names, in load order
//! CACHE/kernel/package               the package they came from
//! CACHE/initrd-HASH.cpio             named by a hash of its content
//! ```
//!
//! The kernel is fetched once and kept (delete `CACHE/kernel` to take a newer one). The initrd is
//! content-addressed, so a rebuilt `ferry-guest` gets a new file while guests defined with an
//! older one keep theirs: a destination QEMU re-reads the initrd when a guest migrates, so old
//! files are never deleted here. Everything is built under a temporary name and renamed into
//! place, so a crash leaves nothing half-written behind a final name.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The guest workload, built statically by `build.rs`.
static GUEST_BINARY: &[u8] = include_bytes!(env!("FERRY_GUEST_BIN"));

/// The metapackage whose dependency names the current versioned cloud kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";
/// Modules the guest needs for its virtio disk; their dependencies are added.
const WANTED_MODULES: &[&str] = &["virtio_pci", "virtio_blk"];
/// A statically linked busybox, from the `busybox-static` package.
const BUSYBOX: &str = "/bin/busybox";

/// A bootable lab guest: direct kernel boot with `console=ttyS0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// The kernel (`vmlinuz`), an absolute path.
    pub kernel: PathBuf,
    /// The initramfs, an absolute path; its `/init` runs `ferry-guest`.
    pub initrd: PathBuf,
}

/// Why the guest image could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The cache directory cannot be created or resolved.
    #[error("cannot create image cache directory {path}")]
    CacheDir {
        /// The cache directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The cache lock cannot be taken.
    #[error("cannot lock image cache {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command cannot be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// Its error output, trimmed.
        stderr: String,
    },
    /// apt does not name a versioned kernel package.
    #[error("`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package: {output}")]
    NoKernelPackage {
        /// What apt-cache printed.
        output: String,
    },
    /// An expected file is not there.
    #[error("no {what} in {dir}")]
    Missing {
        /// What was looked for, such as `boot/vmlinuz-*`.
        what: String,
        /// Where.
        dir: PathBuf,
    },
    /// busybox is not the static build.
    #[error("{path} is not a static x86_64 executable; install busybox-static")]
    BusyboxNotStatic {
        /// The busybox found.
        path: PathBuf,
    },
    /// A file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file cannot be written, moved or removed.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Returns the lab guest image in `cache_dir`, fetching the kernel and building the initrd first
/// if needed. Safe to call concurrently from several processes sharing `cache_dir`.
pub fn ensure_image(cache_dir: &Path) -> Result<GuestImage, ImageError> {
    let cache_error = |source| ImageError::CacheDir { path: cache_dir.to_path_buf(), source };
    fs::create_dir_all(cache_dir).map_err(cache_error)?;
    // Absolute, because libvirt reads these paths from another working directory.
    let cache_dir = fs::canonicalize(cache_dir).map_err(cache_error)?;
    let _lock = CacheLock::acquire(&cache_dir.join("lock"))?;
    remove_stale_temporaries(&cache_dir)?;
    let kernel = ensure_kernel(&cache_dir)?;
    let initrd = ensure_initrd(&cache_dir, &kernel)?;
    Ok(GuestImage { kernel: kernel.vmlinuz, initrd })
}

/// Removes what a builder that died left behind. Only called under the lock, so nothing found is
/// in use.
fn remove_stale_temporaries(cache_dir: &Path) -> Result<(), ImageError> {
    let read_error = |source| ImageError::Read { path: cache_dir.to_path_buf(), source };
    for entry in fs::read_dir(cache_dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let name = file_name(&path);
        if name.starts_with("kernel.tmp-") {
            remove_dir_if_present(&path)?;
        } else if name.starts_with("initrd-") && name.contains(".tmp-") {
            fs::remove_file(&path).map_err(|source| write_error(&path, source))?;
        }
    }
    Ok(())
}

/// An exclusive `flock(2)` on a file in the cache, released when dropped (the file is closed).
struct CacheLock {
    _file: File,
}

impl CacheLock {
    fn acquire(path: &Path) -> Result<CacheLock, ImageError> {
        let lock_error = |source| ImageError::Lock { path: path.to_path_buf(), source };
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(lock_error)?;
        loop {
            // SAFETY: flock takes a file descriptor and an operation only; the descriptor is
            // open for the duration of the call because `file` is borrowed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(CacheLock { _file: file });
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(lock_error(error));
            }
        }
    }
}

/// The cached kernel and the modules to load, in order.
struct Kernel {
    vmlinuz: PathBuf,
    modules: Vec<(String, PathBuf)>,
}

fn ensure_kernel(cache_dir: &Path) -> Result<Kernel, ImageError> {
    let dir = cache_dir.join("kernel");
    let load_list = dir.join("modules.load");
    // modules.load is the last file written before the directory is renamed into place.
    if !load_list.exists() {
        fetch_kernel(cache_dir, &dir)?;
    }
    let load = read_text(&load_list)?;
    let modules = load
        .lines()
        .filter(|name| !name.is_empty())
        .map(|name| (name.to_string(), dir.join("modules").join(format!("{name}.ko"))))
        .collect();
    Ok(Kernel { vmlinuz: dir.join("vmlinuz"), modules })
}

/// Downloads and unpacks the kernel package into `dest` (which must not exist).
fn fetch_kernel(cache_dir: &Path, dest: &Path) -> Result<(), ImageError> {
    let output = run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    let package =
        kernel_package(&output).ok_or_else(|| ImageError::NoKernelPackage { output: output.trim().to_string() })?;
    tracing::info!(package, "fetching the lab guest kernel");

    let work = cache_dir.join(format!("kernel.tmp-{}", std::process::id()));
    remove_dir_if_present(&work)?;
    fs::create_dir_all(&work).map_err(|source| write_error(&work, source))?;
    run(Command::new("apt-get").arg("download").arg(&package).current_dir(&work))?;
    let deb = single_entry(&work, "", ".deb")?;
    let root = work.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;

    let boot = root.join("boot");
    let vmlinuz = single_entry(&boot, "vmlinuz-", "")?;
    let version = file_name(&vmlinuz).trim_start_matches("vmlinuz-").to_string();
    let module_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|base| root.join(base).join(&version))
        .find(|dir| dir.is_dir())
        .ok_or_else(|| ImageError::Missing { what: format!("lib/modules/{version}"), dir: root.clone() })?;
    let builtin: HashSet<String> = match fs::read_to_string(module_dir.join("modules.builtin")) {
        Ok(text) => text.lines().map(module_name).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
        Err(source) => return Err(ImageError::Read { path: module_dir.join("modules.builtin"), source }),
    };
    let mut files = HashMap::new();
    index_modules(&module_dir.join("kernel"), &mut files)?;

    // The package ships no modules.dep (depmod runs at install time), so read each module's
    // own `depends=` from its .modinfo section: the same data depmod would use.
    let mut depends: HashMap<String, Vec<String>> = HashMap::new();
    let mut todo: Vec<String> = WANTED_MODULES.iter().map(|name| name.to_string()).collect();
    while let Some(name) = todo.pop() {
        if depends.contains_key(&name) || builtin.contains(&name) {
            continue;
        }
        let path = files
            .get(&name)
            .ok_or_else(|| ImageError::Missing { what: format!("kernel module {name}.ko"), dir: module_dir.clone() })?;
        let bytes = fs::read(path).map_err(|source| ImageError::Read { path: path.clone(), source })?;
        let deps: Vec<String> = modinfo(&bytes, "depends")
            .map(|list| list.split(',').filter(|d| !d.is_empty()).map(module_name).collect())
            .unwrap_or_default();
        let deps: Vec<String> = deps.into_iter().filter(|d| !builtin.contains(d)).collect();
        todo.extend(deps.iter().cloned());
        depends.insert(name, deps);
    }
    let order = load_order(WANTED_MODULES, &depends);

    let modules = work.join("modules");
    fs::create_dir_all(&modules).map_err(|source| write_error(&modules, source))?;
    for name in &order {
        let from = &files[name];
        let to = modules.join(format!("{name}.ko"));
        fs::rename(from, &to).map_err(|source| write_error(&to, source))?;
    }
    let kernel = work.join("vmlinuz");
    fs::rename(&vmlinuz, &kernel).map_err(|source| write_error(&kernel, source))?;
    remove_dir_if_present(&root)?;
    fs::remove_file(&deb).map_err(|source| write_error(&deb, source))?;
    write_file(&work.join("package"), format!("{package}\n").as_bytes())?;
    write_file(&work.join("modules.load"), order.join("\n").as_bytes())?;
    fs::rename(&work, dest).map_err(|source| write_error(dest, source))?;
    tracing::info!(package, modules = %order.join(","), "lab guest kernel ready");
    Ok(())
}

fn ensure_initrd(cache_dir: &Path, kernel: &Kernel) -> Result<PathBuf, ImageError> {
    let busybox = Path::new(BUSYBOX);
    let busybox_bytes = fs::read(busybox).map_err(|source| ImageError::Read { path: busybox.to_path_buf(), source })?;
    if has_interpreter(&busybox_bytes) != Some(false) {
        return Err(ImageError::BusyboxNotStatic { path: busybox.to_path_buf() });
    }
    let mut modules = Vec::new();
    for (name, path) in &kernel.modules {
        let bytes = fs::read(path).map_err(|source| ImageError::Read { path: path.clone(), source })?;
        modules.push((name.clone(), bytes));
    }
    let archive = initramfs(&busybox_bytes, GUEST_BINARY, &modules);
    let path = cache_dir.join(format!("initrd-{:016x}.cpio", fnv1a(&archive)));
    if !path.exists() {
        let temp = cache_dir.join(format!("{}.tmp-{}", file_name(&path), std::process::id()));
        write_file(&temp, &archive)?;
        fs::rename(&temp, &path).map_err(|source| write_error(&path, source))?;
        tracing::info!(initrd = %path.display(), bytes = archive.len(), "lab guest initrd built");
    }
    Ok(path)
}

/// The initramfs: busybox, the modules, `ferry-guest` and an `/init` that loads the modules and
/// runs the guest. If the guest ever exits, so does init, and the kernel panics for all to see.
fn initramfs(busybox: &[u8], guest: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        cpio.dir(dir, 0o755);
    }
    // The kernel opens /dev/console for init before /init can mount devtmpfs.
    cpio.char_device("dev/console", 0o600, 5, 1);
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.symlink("bin/sh", "busybox");
    cpio.file("bin/ferry-guest", 0o755, guest);
    for (name, bytes) in modules {
        cpio.file(&format!("lib/modules/{name}.ko"), 0o644, bytes);
    }
    let names: Vec<&str> = modules.iter().map(|(name, _)| name.as_str()).collect();
    cpio.file("init", 0o755, init_script(&names).as_bytes());
    cpio.finish()
}

fn init_script(modules: &[&str]) -> String {
    format!(
        "#!/bin/sh\n\
         # ferry lab guest init, written by ferry-lab (crates/lab/src/image.rs).\n\
         export PATH=/bin\n\
         busybox mount -t proc proc /proc\n\
         busybox mount -t sysfs sysfs /sys\n\
         busybox mount -t devtmpfs devtmpfs /dev\n\
         for m in {modules}; do\n\
         \x20   busybox insmod /lib/modules/$m.ko || echo \"ferry-init: cannot load kernel module $m\"\n\
         done\n\
         /bin/ferry-guest\n\
         echo \"ferry-init: ferry-guest exited with status $?\"\n\
         exit 1\n",
        modules = modules.join(" ")
    )
}

/// The versioned package that `apt-cache depends` output names, such as
/// `linux-image-6.1.0-56-cloud-amd64`.
fn kernel_package(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|line| {
        let name = line.trim().strip_prefix("Depends:")?.trim();
        (name.starts_with("linux-image-") && !name.contains('<')).then(|| name.to_string())
    })
}

/// `virtio-pci` and `kernel/drivers/virtio/virtio_pci.ko` are both module `virtio_pci`.
fn module_name(text: &str) -> String {
    let base = text.rsplit('/').next().unwrap_or(text);
    base.trim().trim_end_matches(".ko").replace('-', "_")
}

/// Modules to load so that each comes after its dependencies; `depends` must hold every module
/// reachable from `wanted` that is not built in (absent names are skipped as built in).
fn load_order(wanted: &[&str], depends: &HashMap<String, Vec<String>>) -> Vec<String> {
    fn visit(name: &str, depends: &HashMap<String, Vec<String>>, seen: &mut HashSet<String>, order: &mut Vec<String>) {
        let Some(deps) = depends.get(name) else {
            return;
        };
        if !seen.insert(name.to_string()) {
            return;
        }
        for dep in deps {
            visit(dep, depends, seen, order);
        }
        order.push(name.to_string());
    }
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    for name in wanted {
        visit(name, depends, &mut seen, &mut order);
    }
    order
}

/// A `key=value` from the `.modinfo` section of a kernel module (an ELF64 relocatable file).
fn modinfo<'a>(elf: &'a [u8], key: &str) -> Option<&'a str> {
    let section = elf_section(elf, ".modinfo")?;
    section
        .split(|&b| b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
}

fn elf_section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(read_u64(elf, 0x28)?).ok()?;
    let shentsize = usize::from(read_u16(elf, 0x3a)?);
    let shnum = usize::from(read_u16(elf, 0x3c)?);
    let shstrndx = usize::from(read_u16(elf, 0x3e)?);
    let section = |index: usize| -> Option<(usize, &'a [u8])> {
        let header = shoff.checked_add(index.checked_mul(shentsize)?)?;
        let name = usize::try_from(read_u32(elf, header)?).ok()?;
        let offset = usize::try_from(read_u64(elf, header + 24)?).ok()?;
        let size = usize::try_from(read_u64(elf, header + 32)?).ok()?;
        Some((name, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx)?;
    (0..shnum).find_map(|index| {
        let (name, data) = section(index)?;
        let name = names.get(name..)?.split(|&b| b == 0).next()?;
        (name == wanted.as_bytes()).then_some(data)
    })
}

/// Whether a 64-bit little-endian ELF executable asks for a program interpreter, i.e. is
/// dynamically linked; `None` if it is not such a file.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(read_u64(elf, 0x20)?).ok()?;
    let phentsize = usize::from(read_u16(elf, 0x36)?);
    let phnum = usize::from(read_u16(elf, 0x38)?);
    for index in 0..phnum {
        if read_u32(elf, phoff + index * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// A cpio archive in the "newc" format the kernel unpacks as initramfs. Deterministic: same
/// content, same bytes (mtime 0, inode numbers in order), so the archive can be named by a hash.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    inodes: u32,
}

impl Cpio {
    const DIR: u32 = 0o040000;
    const FILE: u32 = 0o100000;
    const SYMLINK: u32 = 0o120000;
    const CHAR: u32 = 0o020000;

    fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, Self::DIR | perm, 2, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, Self::FILE | perm, 1, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, Self::SYMLINK | 0o777, 1, (0, 0), target.as_bytes());
    }

    fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, Self::CHAR | perm, 1, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, (0, 0), 0);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        self.inodes += 1;
        let size = u32::try_from(data.len()).expect("initramfs members are far below 4 GiB");
        self.header(name, self.inodes, mode, nlink, rdev, size);
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let name_size = u32::try_from(name.len() + 1).expect("short names");
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        for field in [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size, 0] {
            let _ = write!(header, "{field:08x}");
        }
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        let padded = self.out.len().next_multiple_of(4);
        self.out.resize(padded, 0);
    }
}

/// FNV-1a, 64 bits: stable across Rust versions (unlike `DefaultHasher`), good enough to name
/// cache files.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Runs a command, returning its standard output.
fn run(command: &mut Command) -> Result<String, ImageError> {
    let line = command_line(command);
    let output = command.output().map_err(|source| ImageError::Spawn { command: line.clone(), source })?;
    if !output.status.success() {
        return Err(ImageError::Command {
            command: line,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds the only entry in `dir` named `prefix…suffix`.
fn single_entry(dir: &Path, prefix: &str, suffix: &str) -> Result<PathBuf, ImageError> {
    let entries = fs::read_dir(dir).map_err(|source| ImageError::Read { path: dir.to_path_buf(), source })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ImageError::Read { path: dir.to_path_buf(), source })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && name.ends_with(suffix) {
            found.push(entry.path());
        }
    }
    match <[PathBuf; 1]>::try_from(found) {
        Ok([path]) => Ok(path),
        Err(found) => Err(ImageError::Missing {
            what: if found.is_empty() {
                format!("{prefix}*{suffix}")
            } else {
                format!("single {prefix}*{suffix} (found {})", found.len())
            },
            dir: dir.to_path_buf(),
        }),
    }
}

/// Maps module names to their `.ko` files under `dir`, recursively.
fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) -> Result<(), ImageError> {
    let read_error = |source| ImageError::Read { path: dir.to_path_buf(), source };
    for entry in fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let path = entry.path();
        if entry.file_type().map_err(read_error)?.is_dir() {
            index_modules(&path, index)?;
        } else if file_name(&path).ends_with(".ko") {
            index.insert(module_name(&file_name(&path)), path);
        }
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_text(path: &Path) -> Result<String, ImageError> {
    fs::read_to_string(path).map_err(|source| ImageError::Read { path: path.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    fs::write(path, bytes).map_err(|source| write_error(path, source))
}

fn remove_dir_if_present(dir: &Path) -> Result<(), ImageError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(write_error(dir, e)),
        _ => Ok(()),
    }
}

fn write_error(path: &Path, source: io::Error) -> ImageError {
    ImageError::Write { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_package_from_apt_cache() {
        let check = |output: &str, expect: Option<&str>| {
            assert_eq!(kernel_package(output).as_deref(), expect, "{output}");
        };
        check(
            "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n",
            Some("linux-image-6.1.0-56-cloud-amd64"),
        );
        check(
            "linux-image-cloud-amd64\n  Depends: <linux-image-6.1.0-9-cloud-amd64-unsigned>\n  Depends: linux-image-6.1.0-9-cloud-amd64\n",
            Some("linux-image-6.1.0-9-cloud-amd64"),
        );
        check("linux-image-cloud-amd64\n", None);
        check("W: No information about pkgs\n", None);
    }

    #[test]
    fn module_load_order() {
        // Debian 12's cloud kernel, from the modules' own `depends=`.
        let depends: HashMap<String, Vec<String>> = [
            ("virtio_pci", "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio"),
            ("virtio_blk", "virtio,virtio_ring"),
            ("virtio", "virtio_ring"),
            ("virtio_ring", ""),
            ("virtio_pci_modern_dev", ""),
            ("virtio_pci_legacy_dev", ""),
        ]
        .into_iter()
        .map(|(name, deps)| {
            let deps = deps.split(',').filter(|d| !d.is_empty()).map(String::from).collect();
            (name.to_string(), deps)
        })
        .collect();
        assert_eq!(
            load_order(WANTED_MODULES, &depends).join(" "),
            "virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci virtio_blk"
        );
        // Built-in modules are absent from the map and simply not loaded.
        let mut builtin_ring = depends.clone();
        builtin_ring.remove("virtio_ring");
        assert_eq!(
            load_order(WANTED_MODULES, &builtin_ring).join(" "),
            "virtio_pci_modern_dev virtio_pci_legacy_dev virtio virtio_pci virtio_blk"
        );
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name("kernel/drivers/char/hw_random/virtio-rng.ko"), "virtio_rng");
        assert_eq!(module_name("virtio_pci"), "virtio_pci");
    }

    #[test]
    fn cpio_newc_layout() {
        let mut cpio = Cpio::default();
        cpio.dir("bin", 0o755);
        cpio.file("bin/x", 0o755, b"hello");
        cpio.char_device("dev/console", 0o600, 5, 1);
        let bytes = cpio.finish();
        let text = String::from_utf8_lossy(&bytes);
        let expect = concat!(
            "070701", "00000001", "000041ed", "00000000", "00000000", "00000002", "00000000", "00000000", "00000000",
            "00000000", "00000000", "00000000", "00000004", "00000000", "bin\0",
        );
        assert!(text.starts_with(expect), "{text:?}");
        // Every member starts 4-byte aligned: find each header magic.
        let starts: Vec<usize> = text.match_indices("070701").map(|(at, _)| at).collect();
        assert_eq!(starts.len(), 4, "{text:?}");
        assert!(starts.iter().all(|at| at % 4 == 0), "{starts:?}");
        assert!(text.contains(concat!("bin\0\0\0", "070701")), "{text:?}");
        assert!(text.contains(concat!("bin/x\0hello\0\0\0", "070701")), "{text:?}");
        assert!(text.contains("00000005000000010000000c00000000dev/console\0"), "{text:?}");
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"), "{text:?}");
    }

    #[test]
    fn init_loads_modules_then_runs_the_guest() {
        let script = init_script(&["virtio_ring", "virtio"]);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("for m in virtio_ring virtio; do\n"));
        assert!(script.contains("/bin/ferry-guest\n"));
        assert!(script.ends_with("exit 1\n"));
    }

    #[test]
    fn guest_binary_is_static() {
        assert_eq!(has_interpreter(GUEST_BINARY), Some(false));
    }
}
