//! The memory working set: pages whose content is a function of (page, generation, word), of
//! three classes mixed in the proportions asked for (zero, text, random), so that a migration
//! that compresses meets memory about as compressible as a real guest's.

use ferry_heartbeat::MemoryMix;

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

/// What one page of the working set holds. A page keeps its class for life: rewriting it
/// writes a new generation of the same kind of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageClass {
    /// All zero bytes, whatever the generation: what QEMU sends as a page header alone.
    Zero,
    /// Words from [`WORDS`] in lines, drawn by a generator seeded with (page, generation):
    /// compresses about as much as prose does.
    Text,
    /// xorshift64* output seeded with (page, generation): incompressible.
    Random,
}

/// Classes in the order of [`MemoryMix`]'s parts and of the boot line's `pages=`.
pub const CLASSES: [PageClass; 3] = [PageClass::Zero, PageClass::Text, PageClass::Random];

/// A stride coprime with 100: consecutive pages fall in far-apart slots of 100, so every run of
/// 100 pages holds exactly the mix and the classes are interleaved, as a migration stream that
/// compresses batches of neighbouring pages would meet them in a real guest.
const SLOT_STRIDE: usize = 37;

impl PageClass {
    /// The class of `page` under `mix`.
    pub fn of(page: usize, mix: MemoryMix) -> PageClass {
        let slot = (page % 100 * SLOT_STRIDE % 100) as u8;
        if slot < mix.zero {
            PageClass::Zero
        } else if slot < mix.zero + mix.text {
            PageClass::Text
        } else {
            PageClass::Random
        }
    }

    /// Writes the content of `page` at `generation` into `words`.
    pub fn fill(self, page: usize, generation: u32, words: &mut [u64]) {
        match self {
            PageClass::Zero => {
                words.fill(0);
                // The page must really be written, so that it is dirty for the migration as a
                // page freed and cleared by a real guest is: the compiler may not skip zeroing
                // memory it could know to be zero.
                std::hint::black_box(words);
            }
            PageClass::Text => fill_text(page_base(page, generation), words),
            PageClass::Random => {
                let mut rng = XorShift::new(page_base(page, generation));
                for slot in words {
                    *slot = rng.next();
                }
            }
        }
    }
}

/// The pages the guest keeps rewriting and checking.
pub struct WorkingSet {
    /// The pages, from `first` on; the words before it only align them.
    words: Vec<u64>,
    /// The index of the first word on a page boundary.
    first: usize,
    generations: Vec<u32>,
    mix: MemoryMix,
    dirty_cursor: usize,
    verify_cursor: usize,
    /// What a page should hold, built by the verifier.
    expected: Vec<u64>,
}

impl WorkingSet {
    /// Allocates and fills `pages` pages of `mix` (generation 0).
    pub fn new(pages: usize, mix: MemoryMix) -> WorkingSet {
        // One page more, to start on a page boundary: a zero page that straddled two of the
        // guest's pages would leave neither of them zero for the migration to skip, and a text
        // page would be compressed in two halves next to other classes.
        let words = vec![0; (pages + 1) * PAGE_WORDS];
        let first = (PAGE_BYTES - words.as_ptr() as usize % PAGE_BYTES) % PAGE_BYTES / 8;
        let mut set = WorkingSet {
            words,
            first,
            generations: vec![0; pages],
            mix,
            dirty_cursor: 0,
            verify_cursor: 0,
            expected: vec![0; PAGE_WORDS],
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

    /// Pages of each class, in the order of [`CLASSES`].
    pub fn pages_by_class(&self) -> [u64; 3] {
        let mut counts = [0; 3];
        for page in 0..self.pages() {
            let class = PageClass::of(page, self.mix);
            let index = CLASSES.iter().position(|c| *c == class).expect("every class is in CLASSES");
            counts[index] += 1;
        }
        counts
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

    /// Checks the next page (round robin), every class alike: a zero page must still be all
    /// zero. On a mismatch the page is rewritten afresh, so one corruption is reported once, not
    /// on every pass.
    ///
    /// A lost rewrite of a zero page cannot be seen, and needs not be: it left the same bytes.
    pub fn verify_next(&mut self) -> Option<Mismatch> {
        let page = self.verify_cursor;
        self.verify_cursor = (page + 1) % self.pages();
        let generation = self.generations[page];
        let class = PageClass::of(page, self.mix);
        class.fill(page, generation, &mut self.expected);
        let words = &self.words[self.page_range(page)];
        if words == self.expected.as_slice() {
            return None;
        }
        let word = words.iter().zip(&self.expected).position(|(got, expected)| got != expected)?;
        let (got, expected) = (words[word], self.expected[word]);
        class.fill(page, generation.wrapping_sub(1), &mut self.expected);
        let stale = class != PageClass::Zero && got == self.expected[word];
        let mismatch = Mismatch { page, word, generation, expected, got, stale };
        self.rewrite(page);
        Some(mismatch)
    }

    fn rewrite(&mut self, page: usize) {
        self.generations[page] = self.generations[page].wrapping_add(1);
        self.fill(page);
    }

    fn fill(&mut self, page: usize) {
        let range = self.page_range(page);
        PageClass::of(page, self.mix).fill(page, self.generations[page], &mut self.words[range]);
    }

    /// Where `page` lies in `words`.
    fn page_range(&self, page: usize) -> std::ops::Range<usize> {
        let start = self.first + page * PAGE_WORDS;
        start..start + PAGE_WORDS
    }

    #[cfg(test)]
    fn poke(&mut self, page: usize, word: usize, value: u64) {
        let start = self.page_range(page).start;
        self.words[start + word] = value;
    }

    #[cfg(test)]
    fn page_words(&mut self, page: usize) -> &mut [u64] {
        let range = self.page_range(page);
        &mut self.words[range]
    }

    #[cfg(test)]
    fn all_pages(&self) -> &[u64] {
        &self.words[self.first..self.first + self.pages() * PAGE_WORDS]
    }
}

/// A per-(page, generation) seed: different pages and different generations of one page never
/// look alike, so both a misplaced page and a lost write are caught.
fn page_base(page: usize, generation: u32) -> u64 {
    splitmix64(((page as u64) << 32) | u64::from(generation))
}

/// The splitmix64 finaliser: a good 64-bit mix.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// xorshift64*: three shifts and a multiply a word, cheap enough for the verifier under TCG,
/// and output that no compressor can shrink.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Zero is xorshift's one fixed point.
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Common English words (at most 7 letters, so that each with its separator fits one u64).
/// 256 of them, so one random byte picks one.
pub const WORDS: [&str; 256] = [
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as", "I",
    "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "hot", "word", "but", "what", "some",
    "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how", "said", "an", "each",
    "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would",
    "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could",
    "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water", "than", "call",
    "first", "who", "may", "down", "side", "been", "now", "find", "any", "new", "work", "part", "take", "get", "place",
    "made", "live", "where", "after", "back", "little", "only", "round", "man", "year", "came", "show", "every",
    "good", "me", "give", "our", "under", "name", "very", "through", "just", "form", "great", "think", "say", "help",
    "low", "line", "differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old", "too", "same",
    "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end", "put", "home", "read",
    "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big", "high", "such", "follow", "act",
    "why", "ask", "men", "change", "went", "light", "kind", "off", "need", "house", "picture", "try", "us", "again",
    "animal", "point", "mother", "world", "near", "build", "self", "earth", "father", "head", "stand", "own", "page",
    "should", "country", "found", "answer", "school", "grow", "study", "still", "learn", "plant", "cover", "food",
    "sun", "four", "between", "state", "keep", "eye", "never", "last", "let", "thought", "city", "tree", "cross",
    "farm", "hard", "start", "might", "story", "saw", "far", "sea", "draw", "left", "late", "run", "while", "press",
    "close", "night", "real", "life", "few", "north", "open", "seem", "next", "white", "begin", "got", "walk", "paper",
];

/// Each of [`WORDS`] with a space after it, packed little-endian in a u64, and its length.
const PACKED_WORDS: [(u64, u32); 256] = pack_words();

const fn pack_words() -> [(u64, u32); 256] {
    let mut packed = [(0, 0); 256];
    let mut i = 0;
    while i < WORDS.len() {
        let bytes = WORDS[i].as_bytes();
        assert!(!bytes.is_empty() && bytes.len() < 8, "a word and its space fit one u64");
        let mut value = 0_u64;
        let mut j = 0;
        while j < bytes.len() {
            value |= (bytes[j] as u64) << (8 * j);
            j += 1;
        }
        value |= (b' ' as u64) << (8 * bytes.len());
        packed[i] = (value, bytes.len() as u32 + 1);
        i += 1;
    }
    packed
}

/// Lines of text end near this column.
const LINE_COLUMNS: u32 = 72;

/// Out of 8, how often the next word is the one that follows the last in [`FOLLOWER_STEP`]'s
/// fixed order rather than one drawn at random. Recurring phrases, as text has, make it
/// compress 3-4x: words drawn independently compress 2.5x with zstd -1; with 3, 4, 5 and 6
/// eighths a 4 MiB stream of text pages compressed 3.05x, 3.41x, 3.95x and 4.93x (zstd -1) and
/// 3.33x, 3.66x, 4.19x (zstd -3) (the test `each_class_compresses_as_intended`).
const FOLLOW_EIGHTHS: u64 = 4;

/// The word after word `i` in a phrase is word `i * FOLLOWER_STEP + 1` (mod 256): odd, so every
/// word has one follower and phrases wander through the whole list.
const FOLLOWER_STEP: usize = 167;

/// Fills `words` with lines of words drawn by a generator seeded with `seed`. Words are
/// appended to a 128-bit accumulator and leave it a whole u64 at a time, a few operations per
/// word, because the verifier rebuilds every text page every pass under TCG.
fn fill_text(seed: u64, words: &mut [u64]) {
    let mut rng = XorShift::new(seed);
    let mut picks = 0_u64;
    let mut picks_left = 0;
    let mut pending = 0_u128;
    let mut pending_bytes = 0_u32;
    let mut column = 0_u32;
    let mut last = 0_usize;
    for slot in words {
        while pending_bytes < 8 {
            // 11 bits a pick: 3 to follow or draw, 8 to draw the word; five picks a u64.
            if picks_left == 0 {
                picks = rng.next();
                picks_left = 5;
            }
            last = if picks & 7 < FOLLOW_EIGHTHS {
                (last * FOLLOWER_STEP + 1) & 0xff
            } else {
                ((picks >> 3) & 0xff) as usize
            };
            picks >>= 11;
            picks_left -= 1;
            let (mut word, len) = PACKED_WORDS[last];
            column += len;
            if column >= LINE_COLUMNS {
                // The word's trailing space becomes the line's end.
                word ^= u64::from(b' ' ^ b'\n') << (8 * (len - 1));
                column = 0;
            }
            pending |= u128::from(word) << (8 * pending_bytes);
            pending_bytes += len;
        }
        // Little-endian on purpose: the text's bytes lie in memory in reading order.
        *slot = u64::from_le(pending as u64);
        pending >>= 64;
        pending_bytes -= 8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_TEXT: MemoryMix = MemoryMix { zero: 0, text: 100, random: 0 };
    const ALL_RANDOM: MemoryMix = MemoryMix { zero: 0, text: 0, random: 100 };
    const ALL_ZERO: MemoryMix = MemoryMix { zero: 100, text: 0, random: 0 };

    fn verify_all(set: &mut WorkingSet) -> Vec<String> {
        (0..set.pages()).filter_map(|_| set.verify_next()).map(|m| m.describe()).collect()
    }

    fn page_bytes(set: &mut WorkingSet, page: usize) -> Vec<u8> {
        set.page_words(page).iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn pages_lie_on_page_boundaries() {
        for pages in [1, 3, 64] {
            let mut set = WorkingSet::new(pages, MemoryMix::DEFAULT);
            for page in 0..pages {
                assert_eq!(set.page_words(page).as_ptr() as usize % PAGE_BYTES, 0, "page {page} of {pages}");
            }
        }
    }

    #[test]
    fn clean_set_verifies() {
        for mix in [MemoryMix::DEFAULT, ALL_TEXT, ALL_RANDOM, ALL_ZERO] {
            let mut set = WorkingSet::new(64, mix);
            set.dirty(100);
            assert_eq!(verify_all(&mut set), Vec::<String>::new(), "{mix}");
            set.dirty(7);
            assert_eq!(verify_all(&mut set), Vec::<String>::new(), "{mix}");
        }
    }

    #[test]
    fn every_hundred_pages_hold_the_mix_interleaved() {
        for mix in [MemoryMix::DEFAULT, MemoryMix { zero: 3, text: 90, random: 7 }, ALL_ZERO, ALL_TEXT] {
            for start in [0, 17, 1000] {
                let mut counts = [0_u8; 3];
                for page in start..start + 100 {
                    let class = PageClass::of(page, mix);
                    counts[CLASSES.iter().position(|c| *c == class).expect("a class")] += 1;
                }
                assert_eq!(counts, [mix.zero, mix.text, mix.random], "{mix} from page {start}");
            }
        }
        let set = WorkingSet::new(1000, MemoryMix::DEFAULT);
        assert_eq!(set.pages_by_class(), [250, 500, 250]);
        // Interleaved: no long run of one class, which would compress differently.
        let longest_run = (0..1000)
            .collect::<Vec<_>>()
            .chunk_by(|a, b| PageClass::of(*a, MemoryMix::DEFAULT) == PageClass::of(*b, MemoryMix::DEFAULT))
            .map(<[usize]>::len)
            .max();
        assert!(longest_run.is_some_and(|n| n <= 4), "longest run of one class: {longest_run:?}");
    }

    #[test]
    fn a_rewritten_page_keeps_its_class_and_changes_unless_zero() {
        let mut set = WorkingSet::new(100, MemoryMix::DEFAULT);
        let before: Vec<Vec<u8>> = (0..100).map(|p| page_bytes(&mut set, p)).collect();
        set.dirty(100);
        for (page, old) in before.iter().enumerate() {
            let new = page_bytes(&mut set, page);
            match PageClass::of(page, MemoryMix::DEFAULT) {
                PageClass::Zero => {
                    assert!(new.iter().all(|b| *b == 0), "page {page} is zero");
                }
                PageClass::Text => {
                    assert_ne!(&new, old, "page {page}: a new generation of text");
                    let text = std::str::from_utf8(&new).expect("text pages are text");
                    assert!(text.chars().all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '\n'), "{text}");
                    let longest_line = text.lines().map(str::len).max().unwrap_or(0);
                    assert!(longest_line <= 80, "page {page}: a line of {longest_line} bytes");
                }
                PageClass::Random => {
                    assert_ne!(&new, old, "page {page}: a new generation of random bytes");
                    let mut seen = [false; 256];
                    new.iter().for_each(|b| seen[usize::from(*b)] = true);
                    assert!(seen.iter().filter(|s| **s).count() > 200, "page {page} is not random");
                }
            }
        }
    }

    #[test]
    fn corruption_is_reported_once_in_every_class() {
        for (mix, expected_tail) in [
            (ALL_ZERO, " expected=0x0000000000000000 got=0x0000000000000001 gen=0"),
            (ALL_TEXT, " got=0x0000000000000001 gen=0"),
            (ALL_RANDOM, " got=0x0000000000000001 gen=0"),
        ] {
            let mut set = WorkingSet::new(8, mix);
            set.poke(3, 5, 1);
            let found = verify_all(&mut set);
            assert_eq!(found.len(), 1, "{mix}: {found:?}");
            assert!(found[0].starts_with("page=3 word=5 expected=0x"), "{mix}: {found:?}");
            assert!(found[0].ends_with(expected_tail), "{mix}: {found:?}");
            assert_eq!(verify_all(&mut set), Vec::<String>::new(), "{mix}");
        }
    }

    #[test]
    fn lost_write_is_stale() {
        for mix in [ALL_TEXT, ALL_RANDOM] {
            let mut set = WorkingSet::new(4, mix);
            let old: Vec<u64> = set.page_words(1).to_vec();
            set.dirty(2);
            // The migration "forgot" the rewrite of page 1: it holds generation 0 again.
            set.page_words(1).copy_from_slice(&old);
            let found = verify_all(&mut set);
            assert_eq!(found.len(), 1, "{mix}: {found:?}");
            assert!(found[0].starts_with("page=1 word=0 "), "{mix}: {found:?}");
            assert!(found[0].ends_with(" gen=1 stale=1"), "{mix}: {found:?}");
        }
    }

    fn swap_first_two_pages(set: &mut WorkingSet) {
        let first = set.page_words(0).to_vec();
        let second = set.page_words(1).to_vec();
        set.page_words(0).copy_from_slice(&second);
        set.page_words(1).copy_from_slice(&first);
    }

    #[test]
    fn swapped_pages_are_caught() {
        for mix in [ALL_TEXT, ALL_RANDOM] {
            let mut set = WorkingSet::new(4, mix);
            swap_first_two_pages(&mut set);
            assert_eq!(verify_all(&mut set).len(), 2, "{mix}");
        }
        // A page of text or random bytes where a zero page should be is caught too.
        let mut set = WorkingSet::new(100, MemoryMix::DEFAULT);
        let (zero, text) = (0, 1);
        assert_eq!((PageClass::of(zero, set.mix), PageClass::of(text, set.mix)), (PageClass::Zero, PageClass::Text));
        swap_first_two_pages(&mut set);
        assert_eq!(verify_all(&mut set).len(), 2);
    }

    /// Compressed size of `bytes` over their size, as a zstd stream at `level`: how multifd
    /// compresses a channel's pages (one context per channel, flushed per packet).
    fn ratio(bytes: &[u8], level: i32) -> f64 {
        let compressed = zstd::bulk::compress(bytes, level).expect("zstd compresses");
        bytes.len() as f64 / compressed.len() as f64
    }

    /// The same, page by page: what a compressor without history across pages achieves.
    fn ratio_per_page(bytes: &[u8], level: i32) -> f64 {
        let compressed: usize = bytes
            .chunks(PAGE_BYTES)
            .map(|page| zstd::bulk::compress(page, level).expect("zstd compresses").len())
            .sum();
        bytes.len() as f64 / compressed as f64
    }

    fn set_bytes(mix: MemoryMix, pages: usize) -> Vec<u8> {
        let mut set = WorkingSet::new(pages, mix);
        // A later generation too: dirtying keeps what the mix compresses to.
        set.dirty(pages / 2);
        set.all_pages().iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn each_class_compresses_as_intended() {
        // 4 MiB: larger than zstd's window at level 1 and 3, as a guest's memory is.
        let pages = 1024;
        let text = set_bytes(ALL_TEXT, pages);
        let random = set_bytes(ALL_RANDOM, pages);
        let zero = set_bytes(ALL_ZERO, pages);
        let mixed = set_bytes(MemoryMix::DEFAULT, pages);
        for level in [1, 3] {
            let (text_r, random_r, zero_r, mixed_r) =
                (ratio(&text, level), ratio(&random, level), ratio(&zero, level), ratio(&mixed, level));
            let text_page = ratio_per_page(&text, level);
            eprintln!(
                "zstd -{level}: text {text_r:.2} (per page {text_page:.2}), random {random_r:.3}, zero {zero_r:.0}, \
                 25:50:25 {mixed_r:.2}"
            );
            assert!((3.0..=4.0).contains(&text_r), "level {level}: text compresses {text_r:.2}x, not 3-4x");
            assert!((2.0..=3.0).contains(&text_page), "level {level}: a text page alone compresses {text_page:.2}x");
            assert!(random_r < 1.01, "level {level}: random pages compress {random_r:.3}x");
            assert!(zero_r > 1000.0, "level {level}: zero pages compress only {zero_r:.0}x");
            // A quarter zero (free), half text, a quarter random: 1 / (0.5 / text + 0.25 / random).
            let expected = 1.0 / (0.5 / text_r + 0.25 / random_r);
            assert!(
                (mixed_r / expected - 1.0).abs() < 0.1,
                "level {level}: the mix compresses {mixed_r:.2}x, its classes say {expected:.2}x"
            );
        }
    }
}
