//! A seen-set of 64-bit fingerprints whose memory stays bounded.
//!
//! Up to `threshold` fingerprints live in an in-memory hash set (about 16
//! bytes each). Past it the set is sorted and merged into one sorted file
//! of little-endian `u64`s (`seen.bin` in the set's directory); only a
//! sparse index (one key per [`BLOCK`] keys, 8 bytes, i.e. 1/64 byte per
//! fingerprint) stays in memory, and a lookup that misses the memory set
//! reads one block of the file (from the page cache, usually). So a crawl
//! of N URLs holds at most `threshold · 16 + N / 64` bytes for its
//! seen-set whatever N is.
//!
//! The file is scratch: a resumed crawl rebuilds the set from its queue
//! journal, so nothing here has to survive a crash.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Fingerprints per index entry (one block of the file: 4 KiB).
pub const BLOCK: usize = 512;
/// The default in-memory threshold (≈ 4 MiB of hash set).
pub const DEFAULT_THRESHOLD: usize = 256 * 1024;

/// The fingerprints are hashes already: the set uses them as they are.
#[derive(Default, Clone, Copy)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type FpSet = HashSet<u64, BuildHasherDefault<Identity>>;

/// The bounded-memory seen-set.
#[derive(Debug)]
pub struct SeenSet {
    memory: FpSet,
    threshold: usize,
    dir: PathBuf,
    file: Option<File>,
    /// The first key of each block of the file.
    index: Vec<u64>,
    on_disk: u64,
    spills: u64,
}

impl SeenSet {
    /// An empty set spilling to `dir` (created; an old spill file is
    /// removed) past `threshold` fingerprints.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(dir: &Path, threshold: usize) -> std::io::Result<SeenSet> {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::remove_file(dir.join("seen.bin"));
        Ok(SeenSet {
            memory: FpSet::default(),
            threshold: threshold.max(1),
            dir: dir.to_owned(),
            file: None,
            index: Vec::new(),
            on_disk: 0,
            spills: 0,
        })
    }

    /// Fingerprints in the set.
    pub fn len(&self) -> u64 {
        self.memory.len() as u64 + self.on_disk
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Times the memory set was spilled to disk.
    pub fn spills(&self) -> u64 {
        self.spills
    }

    /// Bytes of memory the set holds (the hash set's table and the index).
    pub fn memory_bytes(&self) -> usize {
        // hashbrown: one u64 plus one control byte per bucket.
        self.memory.capacity() * 9 + self.index.capacity() * 8
    }

    /// Whether `fp` is in the set.
    ///
    /// # Errors
    /// The spill file cannot be read.
    pub fn contains(&self, fp: u64) -> std::io::Result<bool> {
        if self.memory.contains(&fp) {
            return Ok(true);
        }
        self.on_disk_contains(fp)
    }

    /// Adds `fp`; `true` when it was not in the set.
    ///
    /// # Errors
    /// The spill file cannot be read or written.
    pub fn insert(&mut self, fp: u64) -> std::io::Result<bool> {
        if self.memory.contains(&fp) || self.on_disk_contains(fp)? {
            return Ok(false);
        }
        self.memory.insert(fp);
        if self.memory.len() >= self.threshold {
            self.spill()?;
        }
        Ok(true)
    }

    fn on_disk_contains(&self, fp: u64) -> std::io::Result<bool> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        // The block whose first key is the last one <= fp.
        let block = match self.index.binary_search(&fp) {
            Ok(_) => return Ok(true),
            Err(0) => return Ok(false),
            Err(i) => i - 1,
        };
        let start = block * BLOCK;
        let n = (self.on_disk as usize - start).min(BLOCK);
        let mut buf = [0u8; BLOCK * 8];
        file.read_exact_at(&mut buf[..n * 8], (start * 8) as u64)?;
        let keys = buf[..n * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])));
        // Sorted: a binary search over the decoded block.
        let keys: Vec<u64> = keys.collect();
        Ok(keys.binary_search(&fp).is_ok())
    }

    /// Merges the memory set into the sorted file.
    fn spill(&mut self) -> std::io::Result<()> {
        let mut fresh: Vec<u64> = self.memory.drain().collect();
        self.memory.shrink_to(self.threshold);
        fresh.sort_unstable();
        let path = self.dir.join("seen.bin");
        let tmp = self.dir.join("seen.bin.tmp");
        let mut out = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
        let mut index = Vec::with_capacity((self.len() as usize + fresh.len()) / BLOCK + 1);
        let mut written: u64 = 0;
        let mut put = |v: u64, out: &mut BufWriter<File>| -> std::io::Result<()> {
            if (written as usize).is_multiple_of(BLOCK) {
                index.push(v);
            }
            written += 1;
            out.write_all(&v.to_le_bytes())
        };
        let mut old = match &self.file {
            Some(_) => Some(BufReader::with_capacity(1 << 16, File::open(&path)?)),
            None => None,
        };
        let next_old = |r: &mut Option<BufReader<File>>| -> std::io::Result<Option<u64>> {
            let Some(r) = r else { return Ok(None) };
            let mut b = [0u8; 8];
            match r.read_exact(&mut b) {
                Ok(()) => Ok(Some(u64::from_le_bytes(b))),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
                Err(e) => Err(e),
            }
        };
        let mut a = next_old(&mut old)?;
        let mut fi = fresh.into_iter().peekable();
        loop {
            match (a, fi.peek().copied()) {
                (None, None) => break,
                (Some(x), Some(y)) if y < x => {
                    put(y, &mut out)?;
                    fi.next();
                }
                (Some(x), Some(y)) if y == x => {
                    put(x, &mut out)?;
                    fi.next();
                    a = next_old(&mut old)?;
                }
                (Some(x), _) => {
                    put(x, &mut out)?;
                    a = next_old(&mut old)?;
                }
                (None, Some(y)) => {
                    put(y, &mut out)?;
                    fi.next();
                }
            }
        }
        out.flush()?;
        drop(out);
        drop(old);
        std::fs::rename(&tmp, &path)?;
        self.file = Some(OpenOptions::new().read(true).open(&path)?);
        self.index = index;
        self.on_disk = written;
        self.spills += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_norm::fingerprint_str;

    #[test]
    fn spills_and_still_answers_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeenSet::new(dir.path(), 1000).unwrap();
        let fps: Vec<u64> = (0..10_500)
            .map(|i| fingerprint_str(&format!("http://h.test/p{i}")))
            .collect();
        for fp in &fps {
            assert!(s.insert(*fp).unwrap());
        }
        assert_eq!(s.spills(), 10);
        assert_eq!(s.len(), 10_500);
        for fp in &fps {
            assert!(s.contains(*fp).unwrap());
            assert!(!s.insert(*fp).unwrap(), "inserted twice");
        }
        for i in 0..5000 {
            assert!(
                !s.contains(fingerprint_str(&format!("http://h.test/q{i}")))
                    .unwrap()
            );
        }
        // Extremes of the key space.
        assert!(s.insert(0).unwrap());
        assert!(s.insert(u64::MAX).unwrap());
        assert!(!s.insert(0).unwrap());
        assert_eq!(s.len(), 10_502);
    }

    #[test]
    fn memory_is_bounded_by_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeenSet::new(dir.path(), 4096).unwrap();
        let mut peak = 0;
        for i in 0..60_000u64 {
            s.insert(fingerprint_str(&i.to_string())).unwrap();
            peak = peak.max(s.memory_bytes());
        }
        // Memory: the hash set up to the threshold plus the index.
        let bound = 4096 * 2 * 9 + (60_000 / BLOCK + 1) * 8 * 2;
        assert!(peak <= bound, "peak {peak} > {bound}");
        assert_eq!(s.len(), 60_000);
        let file = std::fs::metadata(dir.path().join("seen.bin"))
            .unwrap()
            .len();
        assert_eq!(file, s.on_disk * 8);
    }
}
