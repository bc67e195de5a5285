//! The disk check: one block written a second with direct I/O, earlier blocks read back.
//!
//! Every block is self-describing (magic, block index, write sequence, then words derived from
//! both), so a later reader that knows nothing of this run can still verify it.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::memory::splitmix64;

/// Bytes per block, and the direct-I/O alignment.
pub const BLOCK_BYTES: usize = 4096;
const BLOCK_WORDS: usize = BLOCK_BYTES / 8;
/// Only the start of the disk is used: enough blocks to outlast any test, few enough to copy fast.
const MAX_SPAN_BYTES: u64 = 16 << 20;
/// `FERRYBLK` in the first word of every block written.
const MAGIC: u64 = u64::from_le_bytes(*b"FERRYBLK");
/// Header words: magic, block index, write sequence.
const HEADER_WORDS: usize = 3;
/// Earlier blocks re-read per round, besides the one just written.
const REREADS_PER_ROUND: usize = 16;

/// A page-aligned block buffer, as `O_DIRECT` requires.
#[repr(C, align(4096))]
struct Block([u8; BLOCK_BYTES]);

impl Block {
    fn word(&self, index: usize) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.0[index * 8..index * 8 + 8]);
        u64::from_le_bytes(bytes)
    }

    fn set_word(&mut self, index: usize, value: u64) {
        self.0[index * 8..index * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// The content of block `index` at write `seq`, word by word.
fn expected_word(index: u64, seq: u64, word: usize) -> u64 {
    match word {
        0 => MAGIC,
        1 => index,
        2 => seq,
        _ => splitmix64(splitmix64(index ^ (seq << 24)) ^ word as u64),
    }
}

/// The disk being checked.
pub struct DiskCheck {
    path: PathBuf,
    file: File,
    /// Write sequence last written to each block, `None` if not written this boot.
    written: Vec<Option<u64>>,
    next_seq: u64,
    reread_cursor: usize,
    buf: Box<Block>,
    /// Blocks found intact from an earlier boot, and problems found in them, reported with
    /// the first round.
    found_at_boot: (u64, Vec<String>),
}

impl DiskCheck {
    /// Opens `path` for direct I/O and proves it works with one write and read.
    pub fn open(path: &Path) -> io::Result<DiskCheck> {
        let mut file = OpenOptions::new().read(true).write(true).custom_flags(libc::O_DIRECT).open(path)?;
        let size = file.seek(SeekFrom::End(0))?;
        let blocks = usize::try_from(size.min(MAX_SPAN_BYTES) / BLOCK_BYTES as u64).expect("at most 4096 blocks");
        if blocks == 0 {
            return Err(io::Error::other(format!("only {size} bytes")));
        }
        let mut disk = DiskCheck {
            path: path.to_path_buf(),
            file,
            written: vec![None; blocks],
            next_seq: 0,
            reread_cursor: 0,
            buf: Box::new(Block([0; BLOCK_BYTES])),
            found_at_boot: (0, Vec::new()),
        };
        disk.found_at_boot = disk.adopt_earlier_blocks()?;
        let first = disk.write_next()?;
        if let Some(problem) = disk.verify(first)? {
            return Err(io::Error::other(format!("read back wrong data: {problem}")));
        }
        Ok(disk)
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One round: write the next block, then read back it and a few earlier ones.
    ///
    /// Returns the number of blocks verified and the problems seen (text after `FERRY CORRUPT `).
    pub fn round(&mut self) -> (u64, Vec<String>) {
        let (mut verified, mut problems) = std::mem::take(&mut self.found_at_boot);
        let mut to_check = Vec::with_capacity(REREADS_PER_ROUND + 1);
        match self.write_next() {
            Ok(index) => to_check.push(index),
            Err(e) => problems.push(format!("disk write error={:?}", e.to_string())),
        }
        let blocks = self.written.len();
        let mut looked = 0;
        while to_check.len() <= REREADS_PER_ROUND && looked < blocks {
            let index = self.reread_cursor;
            self.reread_cursor = (index + 1) % blocks;
            looked += 1;
            if self.written[index].is_some() && !to_check.contains(&index) {
                to_check.push(index);
            }
        }
        for index in to_check {
            match self.verify(index) {
                Ok(None) => verified += 1,
                Ok(Some(problem)) => {
                    verified += 1;
                    // Reported once; the block is rewritten when its turn comes.
                    self.written[index] = None;
                    problems.push(problem);
                }
                Err(e) => problems.push(format!("disk block={index} read error={:?}", e.to_string())),
            }
        }
        (verified, problems)
    }

    /// Reads every block once at boot. Blocks written by an earlier boot (a guest restarted
    /// after a cold move, whose disk was copied) describe themselves: each must be intact,
    /// and is then re-checked like the blocks this boot writes. A block that is neither
    /// unwritten (all zero) nor a whole block of ours is reported.
    fn adopt_earlier_blocks(&mut self) -> io::Result<(u64, Vec<String>)> {
        let mut found = 0;
        let mut problems = Vec::new();
        for index in 0..self.written.len() {
            self.file.read_exact_at(&mut self.buf.0, (index * BLOCK_BYTES) as u64)?;
            if self.buf.0.iter().all(|b| *b == 0) {
                continue;
            }
            let seq = self.buf.word(2);
            if self.buf.word(0) != MAGIC || self.buf.word(1) != index as u64 {
                problems.push(format!(
                    "disk block={index} at boot: not a block of ours (word0={:#018x} word1={:#018x})",
                    self.buf.word(0),
                    self.buf.word(1)
                ));
                continue;
            }
            self.written[index] = Some(seq);
            match self.verify(index)? {
                None => {
                    found += 1;
                    self.next_seq = self.next_seq.max(seq + 1);
                }
                Some(problem) => {
                    self.written[index] = None;
                    problems.push(format!("{problem} at-boot"));
                }
            }
        }
        Ok((found, problems))
    }

    fn write_next(&mut self) -> io::Result<usize> {
        let seq = self.next_seq;
        let index = usize::try_from(seq % self.written.len() as u64).expect("index < blocks");
        for word in 0..BLOCK_WORDS {
            self.buf.set_word(word, expected_word(index as u64, seq, word));
        }
        // Forget the old content first: if the write fails half-way, nothing stale is expected.
        self.written[index] = None;
        self.file.write_all_at(&self.buf.0, (index * BLOCK_BYTES) as u64)?;
        self.written[index] = Some(seq);
        self.next_seq += 1;
        Ok(index)
    }

    /// Reads block `index` back; `Ok(Some(text))` describes the first wrong word.
    fn verify(&mut self, index: usize) -> io::Result<Option<String>> {
        let Some(seq) = self.written[index] else {
            return Ok(None);
        };
        self.buf.0.fill(0);
        self.file.read_exact_at(&mut self.buf.0, (index * BLOCK_BYTES) as u64)?;
        let wrong = (0..BLOCK_WORDS).find_map(|word| {
            let expected = expected_word(index as u64, seq, word);
            let got = self.buf.word(word);
            (got != expected).then_some((word, expected, got))
        });
        Ok(wrong.map(|(word, expected, got)| {
            let found_seq = self.buf.word(2);
            let header = if word < HEADER_WORDS { " header" } else { "" };
            format!(
                "disk block={index} expected={expected:#018x} got={got:#018x} word={word}{header} seq={seq} found_seq={found_seq}"
            )
        }))
    }

    #[cfg(test)]
    fn scribble(&self, index: usize, word: usize, value: u64) -> io::Result<()> {
        let mut block = Box::new(Block([0; BLOCK_BYTES]));
        self.file.read_exact_at(&mut block.0, (index * BLOCK_BYTES) as u64)?;
        block.set_word(word, value);
        self.file.write_all_at(&block.0, (index * BLOCK_BYTES) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch file on a filesystem that takes `O_DIRECT` (tmpfs does not), or `None`.
    fn scratch(name: &str, bytes: u64) -> Option<PathBuf> {
        let dir = std::env::var_os("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("ferry-guest-{name}-{}.img", std::process::id()));
        let file = File::create(&path).ok()?;
        file.set_len(bytes).ok()?;
        Some(path)
    }

    #[test]
    fn blocks_round_trip_and_scribbles_are_caught() -> io::Result<()> {
        let Some(path) = scratch("disk", 64 * 1024) else {
            return Ok(());
        };
        let mut disk = match DiskCheck::open(&path) {
            Ok(disk) => disk,
            // No O_DIRECT on this filesystem: nothing to test here.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e),
        };
        assert_eq!(disk.written.len(), 16);
        for _ in 0..40 {
            let (verified, problems) = disk.round();
            assert!(verified >= 1);
            assert_eq!(problems, Vec::<String>::new());
        }
        let victim = disk.written.iter().position(|seq| seq.is_some()).expect("a written block");
        disk.scribble(victim, 100, 42)?;
        let problems: Vec<String> = (0..2).flat_map(|_| disk.round().1).collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with(&format!("disk block={victim} expected=0x")), "{problems:?}");
        assert!(problems[0].contains(" got=0x000000000000002a word=100 "), "{problems:?}");
        std::fs::remove_file(&path)
    }

    #[test]
    fn a_reboot_adopts_intact_blocks_and_reports_damaged_ones() -> io::Result<()> {
        let Some(path) = scratch("reboot", 64 * 1024) else {
            return Ok(());
        };
        let mut disk = match DiskCheck::open(&path) {
            Ok(disk) => disk,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
            Err(e) => return Err(e),
        };
        for _ in 0..10 {
            disk.round();
        }
        disk.scribble(3, 200, 7)?;
        drop(disk);
        let mut again = DiskCheck::open(&path)?;
        let (verified, problems) = again.round();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("disk block=3 ") && problems[0].ends_with("at-boot"), "{problems:?}");
        assert!(verified >= 10, "intact blocks of the earlier boot verified: {verified}");
        assert!(again.next_seq > 11, "writes continue after the earlier boot's sequence");
        std::fs::remove_file(&path)
    }
}
