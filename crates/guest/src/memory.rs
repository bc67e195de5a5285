//! The memory working set: pages whose content is a function of (page, generation, word).

/// Bytes per page, as the migration sees them.
pub const PAGE_BYTES: usize = 4096;
const PAGE_WORDS: usize = PAGE_BYTES / 8;

/// Pages per MiB.
pub const PAGES_PER_MIB: u64 = (1 << 20) / PAGE_BYTES as u64;

/// One word that did not hold what was last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Page index in the working set.
    pub page: usize,
    /// Word index in the page.
    pub word: usize,
    /// Generation the page should hold.
    pub generation: u32,
    /// What should be there.
    pub expected: u64,
    /// What is there.
    pub got: u64,
    /// The word holds the previous generation's value: a write that was lost, the classic symptom
    /// of a dirty page the migration failed to resend.
    pub stale: bool,
}

impl Mismatch {
    /// The text after `FERRY CORRUPT `.
    pub fn describe(&self) -> String {
        format!(
            "page={} word={} expected={:#018x} got={:#018x} gen={}{}",
            self.page,
            self.word,
            self.expected,
            self.got,
            self.generation,
            if self.stale { " stale=1" } else { "" }
        )
    }
}

/// The pages the guest keeps rewriting and checking.
pub struct WorkingSet {
    words: Vec<u64>,
    generations: Vec<u32>,
    dirty_cursor: usize,
    verify_cursor: usize,
}

impl WorkingSet {
    /// Allocates and fills `pages` pages (generation 0).
    pub fn new(pages: usize) -> WorkingSet {
        let mut set = WorkingSet {
            words: vec![0; pages * PAGE_WORDS],
            generations: vec![0; pages],
            dirty_cursor: 0,
            verify_cursor: 0,
        };
        for page in 0..pages {
            set.fill(page);
        }
        set
    }

    /// Number of pages.
    pub fn pages(&self) -> usize {
        self.generations.len()
    }

    /// Rewrites the next `count` pages (round robin, so every page is dirtied in turn and the
    /// migration sees `count` distinct dirty pages whenever `count` ≤ the working set).
    pub fn dirty(&mut self, count: usize) {
        for _ in 0..count {
            let page = self.dirty_cursor;
            self.dirty_cursor = (page + 1) % self.pages();
            self.rewrite(page);
        }
    }

    /// Checks the next page (round robin). On a mismatch the page is rewritten afresh, so one
    /// corruption is reported once, not on every pass.
    pub fn verify_next(&mut self) -> Option<Mismatch> {
        let page = self.verify_cursor;
        self.verify_cursor = (page + 1) % self.pages();
        let generation = self.generations[page];
        let words = &self.words[page * PAGE_WORDS..(page + 1) * PAGE_WORDS];
        let base = page_base(page, generation);
        let (word, got) = words
            .iter()
            .enumerate()
            .find(|&(word, &got)| got != word_value(base, word))
            .map(|(word, &got)| (word, got))?;
        let stale = got == word_value(page_base(page, generation.wrapping_sub(1)), word);
        let mismatch = Mismatch { page, word, generation, expected: word_value(base, word), got, stale };
        self.rewrite(page);
        Some(mismatch)
    }

    fn rewrite(&mut self, page: usize) {
        self.generations[page] = self.generations[page].wrapping_add(1);
        self.fill(page);
    }

    fn fill(&mut self, page: usize) {
        let base = page_base(page, self.generations[page]);
        let words = &mut self.words[page * PAGE_WORDS..(page + 1) * PAGE_WORDS];
        for (word, slot) in words.iter_mut().enumerate() {
            *slot = word_value(base, word);
        }
    }

    #[cfg(test)]
    fn poke(&mut self, page: usize, word: usize, value: u64) {
        self.words[page * PAGE_WORDS + word] = value;
    }
}

/// A per-(page, generation) value: different pages and different generations of one page never
/// look alike, so both a misplaced page and a lost write are caught.
fn page_base(page: usize, generation: u32) -> u64 {
    splitmix64(((page as u64) << 32) | u64::from(generation))
}

/// Cheap per word (the verifier runs under TCG), distinct per word within a page.
fn word_value(base: u64, word: usize) -> u64 {
    base ^ (word as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The splitmix64 finaliser: a good 64-bit mix.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify_all(set: &mut WorkingSet) -> Vec<String> {
        (0..set.pages()).filter_map(|_| set.verify_next()).map(|m| m.describe()).collect()
    }

    #[test]
    fn clean_set_verifies() {
        let mut set = WorkingSet::new(64);
        set.dirty(100);
        assert_eq!(verify_all(&mut set), Vec::<String>::new());
        set.dirty(7);
        assert_eq!(verify_all(&mut set), Vec::<String>::new());
    }

    #[test]
    fn corruption_is_reported_once() {
        let mut set = WorkingSet::new(8);
        set.poke(3, 5, 0);
        let found = verify_all(&mut set);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("page=3 word=5 expected=0x"), "{found:?}");
        assert!(found[0].ends_with(" got=0x0000000000000000 gen=0"), "{found:?}");
        assert_eq!(verify_all(&mut set), Vec::<String>::new());
    }

    #[test]
    fn lost_write_is_stale() {
        let mut set = WorkingSet::new(4);
        let old: Vec<u64> = set.words[PAGE_WORDS..2 * PAGE_WORDS].to_vec();
        set.dirty(2);
        // The migration "forgot" the rewrite of page 1: it holds generation 0 again.
        set.words[PAGE_WORDS..2 * PAGE_WORDS].copy_from_slice(&old);
        let found = verify_all(&mut set);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("page=1 word=0 "), "{found:?}");
        assert!(found[0].ends_with(" gen=1 stale=1"), "{found:?}");
    }

    #[test]
    fn swapped_pages_are_caught() {
        let mut set = WorkingSet::new(4);
        let (a, b) = set.words.split_at_mut(PAGE_WORDS);
        a.swap_with_slice(&mut b[..PAGE_WORDS]);
        assert_eq!(verify_all(&mut set).len(), 2);
    }
}
