//! In-memory embedding search: exact `f32` cosine scores or per-row int8 scores (with
//! edgeai-core's int8 kernels), top-k identities, optionally split over the kernels' threads.
//!
//! A search reads the rows once, in blocks of [`BLOCK_ROWS`] (one kernel call per block and
//! group of queries), and keeps, per chunk of rows, only a bounded shortlist of the best
//! identities (each with its best row so far); the chunks' shortlists are merged at the end.
//! Nothing per row or per identity is allocated, except for shortlists longer than
//! [`MAX_SHORTLIST`] (a `k` in the hundreds), which take a dense scan.
//!
//! # Memory
//!
//! Each row (embedding) is held as int8 (`dim` bytes and an `f32` scale) and, with
//! [`RowStorage::F32AndInt8`] (the default), also as `f32` (`4 dim` bytes) for the exact
//! re-score of [`SearchPrecision::Int8`] / [`SearchPrecision::Int8Rerank`]. With
//! [`RowStorage::Int8Only`] the `f32` copy is not kept: the re-score fetches the `f32` rows
//! of the shortlist (a few dozen per query) from a [`RowSource`] by their stable `u64` keys
//! ([`EmbeddingIndex::add_keyed`]), e.g. from the SQLite file a [`crate::Gallery`] already
//! keeps them in. At 512-d that is about 0.6 kB per identity instead of 2.6 kB
//! ([`EmbeddingIndex::heap_bytes`]; a million faces fit a 4 GB Raspberry Pi).

use std::cmp::Ordering;
use std::collections::HashMap;

use edgeai_core::quant::int8::{dot_i8_tile, quantize_row};
use edgeai_core::quant::{num_threads, par_chunks_mut_at_most};

use crate::embed::l2_normalize;
use crate::{Error, Result};

/// Precision of gallery search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchPrecision {
    /// Exact `f32` dot products of L2-normalised vectors (needs the `f32` rows in memory:
    /// [`RowStorage::F32AndInt8`]).
    #[default]
    F32,
    /// Per-row symmetric int8 vectors (4x less memory traffic), integer dot products, then
    /// the best `k + 16` identities ([`INT8_RESCORE_EXTRA`], each by its best int8 row)
    /// re-scored in `f32`: the int8 scores are about 1e-3 off, enough to swap near-ties at
    /// the edge of the top k, and the short re-score puts them back (recall@10 1.000 vs
    /// 0.982 without it, 100 random queries on 100k random 128-d vectors) for 26 more
    /// `f32` dot products per query at k = 10.
    /// The scores returned are exact `f32` cosines. The `f32` rows come from memory, or,
    /// with [`RowStorage::Int8Only`], from the [`RowSource`] of
    /// [`EmbeddingIndex::search_with`].
    Int8,
    /// An int8 scan, then the best `max(8 k, 64)` identities (each by its best int8 row)
    /// re-scored exactly in `f32`: int8's scan speed with (near-)exact ranking; the scores
    /// returned are exact `f32` cosines (rows fetched as for [`SearchPrecision::Int8`]).
    Int8Rerank,
    /// The bare int8 scan, no `f32` re-score: the fastest, needs no `f32` row anywhere;
    /// scores are int8 estimates of the cosine (about 1e-3 off, so near-ties at the edge of
    /// the top k may swap: recall@10 about 0.98 on random vectors).
    Int8Scan,
}

impl SearchPrecision {
    /// Whether this precision re-scores its shortlist with the `f32` rows.
    pub fn needs_f32_rows(self) -> bool {
        !matches!(self, SearchPrecision::Int8Scan)
    }
}

/// Which copies of each row an [`EmbeddingIndex`] keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowStorage {
    /// int8 and `f32` (`5 dim + 4` bytes per row): every precision runs from memory.
    #[default]
    F32AndInt8,
    /// int8 only (`dim + 4` bytes per row): [`SearchPrecision::Int8Scan`] runs from memory;
    /// `Int8` and `Int8Rerank` fetch the shortlist's `f32` rows from a [`RowSource`];
    /// [`SearchPrecision::F32`] is refused ([`Error::NoF32Rows`]).
    Int8Only,
}

/// Where an [`RowStorage::Int8Only`] index finds the `f32` rows of a shortlist to re-score.
///
/// `fetch_row(key, out)` writes the row added under `key` ([`EmbeddingIndex::add_keyed`])
/// as the index normalised it ([`EmbeddingIndex::normalized`], which is what
/// [`crate::Gallery`] stores) into `out` (`dim` long), and returns `Ok(false)` when it has
/// no row under `key`. The index checks each fetched row against its int8 copy (the same
/// quants, the same scale within 1e-5) and fails with [`Error::StaleGallery`] when the
/// source has no row or a different one, so a source that changed behind the index is an
/// error, never a wrong answer. Closures `Fn(u64, &mut [f32]) -> Result<bool>` are sources.
pub trait RowSource {
    /// Copies row `key` into `out`; `Ok(false)` when there is no such row.
    fn fetch_row(&self, key: u64, out: &mut [f32]) -> Result<bool>;
}

impl<F: Fn(u64, &mut [f32]) -> Result<bool>> RowSource for F {
    fn fetch_row(&self, key: u64, out: &mut [f32]) -> Result<bool> {
        self(key, out)
    }
}

/// One candidate identity and its score (the best cosine over its enrolled embeddings).
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The identity's name.
    pub name: String,
    /// Cosine similarity in -1..1.
    pub score: f32,
}

/// Rows scored per kernel call (and, in a batch, for every query while they are in cache).
pub const BLOCK_ROWS: usize = 64;

/// The fewest rows per parallel chunk: smaller galleries are scanned on one thread.
const MIN_CHUNK_ROWS: usize = 1024;

/// Queries scored per pass over the rows in [`EmbeddingIndex::search_batch`] (bigger
/// batches take several passes, keeping the shortlists of one pass in cache). Each block
/// of rows is scored against all of a pass's queries in one call of edgeai-core's
/// multi-query tile kernel ([`edgeai_core::quant::int8::dot_i8_tile`]).
pub const BATCH_QUERIES: usize = 32;

/// The longest shortlist kept per chunk of rows; longer ones (large `k`) scan densely.
pub const MAX_SHORTLIST: usize = 256;

/// "No row": the end of an identity's row list.
const NONE: u32 = u32::MAX;

/// A candidate: an identity's best row so far and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cand {
    score: f32,
    owner: u32,
    row: u32,
}

/// An unused shortlist slot (ranks after every real candidate: scores are finite).
const EMPTY: Cand = Cand {
    score: f32::NEG_INFINITY,
    owner: u32::MAX,
    row: u32::MAX,
};

/// Whether `a` ranks before `b`: higher score, then lower identity index.
#[inline]
fn ahead(a: &Cand, b: &Cand) -> bool {
    match a.score.total_cmp(&b.score) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => a.owner < b.owner,
    }
}

/// The order of results: best first.
fn rank(a: &Cand, b: &Cand) -> Ordering {
    b.score.total_cmp(&a.score).then(a.owner.cmp(&b.owner))
}

/// The best `items.len()` distinct identities offered so far, best first, each with its best
/// score (on a tie the row offered first). Unused slots hold [`EMPTY`].
///
/// Exact top-k over chunks: an identity of the overall top-k has its best row in some
/// chunk, and every identity ahead of it in that chunk is ahead of it overall, so it is in
/// that chunk's shortlist; merging the shortlists (in chunk order) keeps it.
struct Shortlist<'a> {
    items: &'a mut [Cand],
    len: usize,
}

impl<'a> Shortlist<'a> {
    fn new(items: &'a mut [Cand]) -> Self {
        items.fill(EMPTY);
        Shortlist { items, len: 0 }
    }

    /// Scores below this cannot enter (`-inf` until the list is full).
    #[inline]
    fn floor(&self) -> f32 {
        self.items.last().map_or(f32::INFINITY, |c| c.score)
    }

    fn offer(&mut self, c: Cand) {
        let cap = self.items.len();
        if let Some(i) = self.items[..self.len]
            .iter()
            .position(|e| e.owner == c.owner)
        {
            if c.score.total_cmp(&self.items[i].score) != Ordering::Greater {
                return;
            }
            self.items.copy_within(i + 1..self.len, i);
            self.len -= 1;
        } else if self.len == cap {
            if cap == 0 || !ahead(&c, &self.items[cap - 1]) {
                return;
            }
            self.len -= 1;
        }
        let pos = self.items[..self.len].partition_point(|e| ahead(e, &c));
        self.items.copy_within(pos..self.len, pos + 1);
        self.items[pos] = c;
        self.len += 1;
    }
}

/// Extra identities [`SearchPrecision::Int8`] re-scores in `f32` beyond the `k` it returns.
pub const INT8_RESCORE_EXTRA: usize = 16;

/// How a precision searches: the scan, the shortlist length, and whether the shortlist is
/// re-scored in `f32`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    int8: bool,
    m: usize,
    rescore: bool,
}

impl Plan {
    fn of(precision: SearchPrecision, k: usize) -> Plan {
        let (int8, m, rescore) = match precision {
            SearchPrecision::F32 => (false, k, false),
            SearchPrecision::Int8 => (true, k.saturating_add(INT8_RESCORE_EXTRA), true),
            SearchPrecision::Int8Rerank => (true, k.saturating_mul(8).max(64), true),
            SearchPrecision::Int8Scan => (true, k, false),
        };
        Plan { int8, m, rescore }
    }
}

/// A normalised query, and its int8 quantization for the int8 scans.
struct Query {
    f: Vec<f32>,
    q8: Vec<i8>,
    scale: f32,
}

/// L2-normalised embeddings of named identities, searchable by cosine similarity.
///
/// Each identity may hold several embeddings (several photos); its score for a query is its
/// best embedding's score. Each embedding (row) has a `u64` key: given by
/// [`EmbeddingIndex::add_keyed`], or numbered by [`EmbeddingIndex::add`]; a
/// [`RowStorage::Int8Only`] index fetches `f32` rows by it from a [`RowSource`].
pub struct EmbeddingIndex {
    dim: usize,
    storage: RowStorage,
    names: Vec<Box<str>>,
    by_name: HashMap<Box<str>, u32>,
    /// Per identity: its first row (then `next`), and its row count.
    head: Vec<u32>,
    counts: Vec<u32>,
    /// Per row: the next row of the same identity ([`NONE`] at the end), its identity, its key.
    next: Vec<u32>,
    owners: Vec<u32>,
    keys: Vec<u64>,
    /// The key [`EmbeddingIndex::add`] gives its next row (above every key seen).
    next_key: u64,
    /// Empty with [`RowStorage::Int8Only`].
    f32_rows: Vec<f32>,
    i8_rows: Vec<i8>,
    i8_scales: Vec<f32>,
    threads: usize,
}

impl std::fmt::Debug for EmbeddingIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingIndex")
            .field("dim", &self.dim)
            .field("storage", &self.storage)
            .field("identities", &self.names.len())
            .field("embeddings", &self.owners.len())
            .field("threads", &self.threads)
            .finish()
    }
}

/// Heap bytes of a vector's buffer.
fn vec_bytes<T>(v: &Vec<T>) -> usize {
    v.capacity() * std::mem::size_of::<T>()
}

impl EmbeddingIndex {
    /// An empty index of `dim`-dimensional embeddings keeping int8 and `f32` rows
    /// ([`RowStorage::F32AndInt8`]), searched on one thread.
    pub fn new(dim: usize) -> Result<Self> {
        Self::with_storage(dim, RowStorage::F32AndInt8)
    }

    /// An empty index of `dim`-dimensional embeddings keeping the rows as `storage` says.
    pub fn with_storage(dim: usize, storage: RowStorage) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument("embedding dimension 0".into()));
        }
        Ok(EmbeddingIndex {
            dim,
            storage,
            names: Vec::new(),
            by_name: HashMap::new(),
            head: Vec::new(),
            counts: Vec::new(),
            next: Vec::new(),
            owners: Vec::new(),
            keys: Vec::new(),
            next_key: 0,
            f32_rows: Vec::new(),
            i8_rows: Vec::new(),
            i8_scales: Vec::new(),
            threads: 1,
        })
    }

    /// Which copies of the rows this index keeps.
    pub fn storage(&self) -> RowStorage {
        self.storage
    }

    /// Makes room for `identities` more identities and `embeddings` more rows, so that
    /// enrolling them allocates nothing more (and no buffer is over-allocated by doubling:
    /// reserve before loading a large gallery on a small device).
    pub fn reserve(&mut self, identities: usize, embeddings: usize) {
        self.names.reserve_exact(identities);
        self.by_name.reserve(identities);
        self.head.reserve_exact(identities);
        self.counts.reserve_exact(identities);
        self.next.reserve_exact(embeddings);
        self.owners.reserve_exact(embeddings);
        self.keys.reserve_exact(embeddings);
        let values = embeddings.saturating_mul(self.dim);
        if self.storage == RowStorage::F32AndInt8 {
            self.f32_rows.reserve_exact(values);
        }
        self.i8_rows.reserve_exact(values);
        self.i8_scales.reserve_exact(embeddings);
    }

    /// Frees the buffers' spare capacity (after removals, or growth without
    /// [`EmbeddingIndex::reserve`]).
    pub fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.by_name.shrink_to_fit();
        self.head.shrink_to_fit();
        self.counts.shrink_to_fit();
        self.next.shrink_to_fit();
        self.owners.shrink_to_fit();
        self.keys.shrink_to_fit();
        self.f32_rows.shrink_to_fit();
        self.i8_rows.shrink_to_fit();
        self.i8_scales.shrink_to_fit();
    }

    /// The heap bytes this index holds: every buffer's capacity, the names (twice: the list
    /// and the name map) and an estimate of the name map's table (its buckets and control
    /// bytes); the allocator's own overhead is not counted.
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self.names.iter().map(|n| n.len()).sum();
        let cap = self.by_name.capacity();
        let buckets = match cap {
            0 => 0,
            1..=7 => (cap + 1).next_power_of_two(),
            _ => (cap * 8 / 7).next_power_of_two(),
        };
        let map = if buckets == 0 {
            0
        } else {
            buckets * (std::mem::size_of::<(Box<str>, u32)>() + 1) + 16
        };
        2 * names
            + map
            + vec_bytes(&self.names)
            + vec_bytes(&self.head)
            + vec_bytes(&self.counts)
            + vec_bytes(&self.next)
            + vec_bytes(&self.owners)
            + vec_bytes(&self.keys)
            + vec_bytes(&self.f32_rows)
            + vec_bytes(&self.i8_rows)
            + vec_bytes(&self.i8_scales)
    }

    /// Searches on at most `threads` threads (`0` counts as 1; 1 = the calling thread only).
    ///
    /// The threads are the kernels' (edgeai-core's one pool, the caller included, sized by
    /// [`edgeai_core::quant::set_num_threads`]): a search never uses more than
    /// [`edgeai_core::quant::num_threads`] of them, whatever is set here, and galleries of
    /// fewer than a few thousand embeddings are scanned on the calling thread alone. Never
    /// fails (the `Result` is kept for compatibility with the former private pool).
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        self.threads = threads.max(1);
        Ok(())
    }

    /// The most threads a search uses (see [`EmbeddingIndex::set_threads`]).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no identity is enrolled.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Number of embeddings over all identities.
    pub fn embeddings(&self) -> usize {
        self.owners.len()
    }

    /// `(name, embedding count)` per identity: in enrolment order until a
    /// [`EmbeddingIndex::remove`], which moves the last identity into the removed one's
    /// place (a swap-remove; search results rank equal scores by this order too).
    pub fn identities(&self) -> impl Iterator<Item = (&str, usize)> {
        self.names
            .iter()
            .map(|n| &**n)
            .zip(self.counts.iter().map(|&c| c as usize))
    }

    /// Whether identity `name` is enrolled.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The keys of identity `name`'s rows (none if it is not enrolled), in no set order.
    pub fn keys_of(&self, name: &str) -> Vec<u64> {
        self.by_name.get(name).map_or_else(Vec::new, |&id| {
            self.rows_of(id).map(|r| self.keys[r as usize]).collect()
        })
    }

    /// The rows of identity `id`, by its row list.
    fn rows_of(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        let mut r = self.head[id as usize];
        std::iter::from_fn(move || {
            (r != NONE).then(|| {
                let cur = r;
                r = self.next[cur as usize];
                cur
            })
        })
    }

    /// Checks dimension and finiteness and L2-normalises a copy.
    pub fn normalized(&self, v: &[f32]) -> Result<Vec<f32>> {
        if v.len() != self.dim {
            return Err(Error::InvalidEmbedding(format!(
                "dimension {}, the gallery holds {}-d embeddings",
                v.len(),
                self.dim
            )));
        }
        let mut v = v.to_vec();
        l2_normalize(&mut v)?;
        Ok(v)
    }

    /// Appends one normalised row owned by identity `owner` under `key`.
    fn push_row(&mut self, e: &[f32], owner: u32, key: u64) {
        let start = self.i8_rows.len();
        self.i8_rows.resize(start + self.dim, 0);
        self.i8_scales
            .push(quantize_row(e, &mut self.i8_rows[start..]));
        if self.storage == RowStorage::F32AndInt8 {
            self.f32_rows.extend_from_slice(e);
        }
        let r = self.owners.len() as u32;
        self.owners.push(owner);
        self.keys.push(key);
        self.next.push(self.head[owner as usize]);
        self.head[owner as usize] = r;
        self.counts[owner as usize] += 1;
        self.next_key = self.next_key.max(key.saturating_add(1));
    }

    /// Adds embeddings to identity `name` (created if new), keyed `0, 1, 2...` above every
    /// key this index has seen. All are checked before any is added; an empty `embeddings`
    /// adds nothing (and creates no identity).
    pub fn add(&mut self, name: &str, embeddings: &[Vec<f32>]) -> Result<()> {
        let first = self.next_key;
        let keyed: Vec<(u64, &[f32])> = embeddings
            .iter()
            .enumerate()
            .map(|(i, e)| (first.saturating_add(i as u64), e.as_slice()))
            .collect();
        self.add_keyed(name, &keyed)
    }

    /// Adds `(key, embedding)` rows to identity `name` (created if new): the key is how a
    /// [`RowSource`] finds the row's `f32` values (a [`crate::Gallery`] uses its database
    /// row id). Keys should be unique (the index does not check: a repeated key makes the
    /// source supply one row for both). All rows are checked before any is added; none adds
    /// nothing (and creates no identity).
    pub fn add_keyed<E: AsRef<[f32]>>(&mut self, name: &str, rows: &[(u64, E)]) -> Result<()> {
        let normed = rows
            .iter()
            .map(|(k, e)| Ok((*k, self.normalized(e.as_ref())?)))
            .collect::<Result<Vec<_>>>()?;
        if normed.is_empty() {
            return Ok(());
        }
        if self.owners.len() + normed.len() >= NONE as usize {
            return Err(Error::InvalidArgument(
                "more than 2^32 - 2 embeddings".into(),
            ));
        }
        let id = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                // (fewer identities than rows, so this fits too)
                let id = self.names.len() as u32;
                self.by_name.insert(name.into(), id);
                self.names.push(name.into());
                self.head.push(NONE);
                self.counts.push(0);
                id
            }
        };
        for (key, e) in normed {
            self.push_row(&e, id, key);
        }
        Ok(())
    }

    /// Removes identity `name` and its embeddings; returns how many embeddings it had (0 if
    /// it was not there).
    ///
    /// No rebuild: each of its rows is filled by the current last row (a swap-remove), and
    /// the last identity takes its place (see [`EmbeddingIndex::identities`]), so the cost
    /// is about its embedding count times the photos of the identities moved.
    pub fn remove(&mut self, name: &str) -> Result<usize> {
        let Some(id) = self.by_name.remove(name) else {
            return Ok(0);
        };
        let mut rows: Vec<u32> = self.rows_of(id).collect();
        self.head[id as usize] = NONE;
        // Highest first: the last row is then never one of `id`'s (those above are gone).
        rows.sort_unstable_by(|a, b| b.cmp(a));
        for &r in &rows {
            self.swap_remove_row(r as usize);
        }
        let id = id as usize;
        self.names.swap_remove(id);
        self.head.swap_remove(id);
        self.counts.swap_remove(id);
        if let Some(moved) = self.names.get(id) {
            if let Some(slot) = self.by_name.get_mut(moved) {
                *slot = id as u32;
            }
            let mut r = self.head[id];
            while r != NONE {
                self.owners[r as usize] = id as u32;
                r = self.next[r as usize];
            }
        }
        Ok(rows.len())
    }

    /// Moves the last row into row `r` (relinking its identity's row list) and drops it.
    /// Row `r` must already be unlinked (its identity's list cleared).
    fn swap_remove_row(&mut self, r: usize) {
        let Some(last) = self.owners.len().checked_sub(1) else {
            return;
        };
        let dim = self.dim;
        if r < last {
            if self.storage == RowStorage::F32AndInt8 {
                self.f32_rows
                    .copy_within(last * dim..(last + 1) * dim, r * dim);
            }
            self.i8_rows
                .copy_within(last * dim..(last + 1) * dim, r * dim);
            self.i8_scales[r] = self.i8_scales[last];
            self.keys[r] = self.keys[last];
            self.next[r] = self.next[last];
            let o = self.owners[last] as usize;
            self.owners[r] = o as u32;
            // Relink whichever link pointed at `last` (the head or a predecessor's next).
            if self.head[o] == last as u32 {
                self.head[o] = r as u32;
            } else {
                let mut p = self.head[o];
                while p != NONE && self.next[p as usize] != last as u32 {
                    p = self.next[p as usize];
                }
                if p != NONE {
                    self.next[p as usize] = r as u32;
                }
            }
        }
        if self.storage == RowStorage::F32AndInt8 {
            self.f32_rows.truncate(last * dim);
        }
        self.i8_rows.truncate(last * dim);
        self.i8_scales.truncate(last);
        self.owners.truncate(last);
        self.keys.truncate(last);
        self.next.truncate(last);
    }

    /// Row `r`'s `f32` values (only with [`RowStorage::F32AndInt8`]).
    #[inline]
    fn row(&self, r: usize) -> &[f32] {
        &self.f32_rows[r * self.dim..(r + 1) * self.dim]
    }

    /// Scores rows `r0..r0 + out.len()` (at most [`BLOCK_ROWS`]) against `q`: `f32` dot
    /// products, or int8 ones times both scales.
    #[inline]
    fn score_block(&self, q: &Query, int8: bool, r0: usize, out: &mut [f32]) {
        let (dim, n) = (self.dim, out.len());
        if int8 {
            let mut dots = [0i32; BLOCK_ROWS];
            let rows = &self.i8_rows[r0 * dim..(r0 + n) * dim];
            let ok = dot_i8_tile(rows, &q.q8, dim, &mut dots[..n]).is_ok();
            debug_assert!(ok, "whole rows, one whole query, n outputs");
            for ((s, &d), &rs) in out.iter_mut().zip(&dots).zip(&self.i8_scales[r0..]) {
                *s = d as f32 * (rs * q.scale);
            }
        } else {
            for (i, s) in out.iter_mut().enumerate() {
                *s = dot_f32(self.row(r0 + i), &q.f);
            }
        }
    }

    /// Offers rows `r0..r1` to every query's shortlist (`lists[i]` for `queries[i]`, at most
    /// [`BATCH_QUERIES`] of them), one block of rows at a time, all queries per block: for
    /// int8, one multi-query tile kernel call per block (`qpack`: the queries' int8 values,
    /// one after the other), so each row is loaded once for all queries.
    fn scan(
        &self,
        queries: &[Query],
        qpack: &[i8],
        int8: bool,
        r0: usize,
        r1: usize,
        lists: &mut [Shortlist],
    ) {
        let dim = self.dim;
        let mut scores = [0f32; BLOCK_ROWS];
        let mut dots = [0i32; BATCH_QUERIES * BLOCK_ROWS];
        let nq = queries.len().min(BATCH_QUERIES);
        let mut b0 = r0;
        while b0 < r1 {
            let n = (r1 - b0).min(BLOCK_ROWS);
            if int8 {
                let rows = &self.i8_rows[b0 * dim..(b0 + n) * dim];
                let ok = dot_i8_tile(rows, &qpack[..nq * dim], dim, &mut dots[..nq * n]).is_ok();
                debug_assert!(ok, "whole rows, whole queries, nq * n outputs");
            }
            for (j, (q, list)) in queries[..nq].iter().zip(lists.iter_mut()).enumerate() {
                if int8 {
                    let d = &dots[j * n..(j + 1) * n];
                    for ((s, &d), &rs) in scores.iter_mut().zip(d).zip(&self.i8_scales[b0..]) {
                        *s = d as f32 * (rs * q.scale);
                    }
                } else {
                    self.score_block(q, false, b0, &mut scores[..n]);
                }
                for (i, &s) in scores[..n].iter().enumerate() {
                    if s < list.floor() {
                        continue;
                    }
                    let r = b0 + i;
                    list.offer(Cand {
                        score: s,
                        owner: self.owners[r],
                        row: r as u32,
                    });
                }
            }
            b0 += n;
        }
    }

    /// The threads a scan of `rows` rows uses, and its chunk length in rows.
    fn chunking(&self, rows: usize) -> (usize, usize) {
        let threads = self.threads.min(num_threads()).max(1);
        let chunks = if threads == 1 || rows < 2 * MIN_CHUNK_ROWS {
            1
        } else {
            (threads * 4).min(rows / MIN_CHUNK_ROWS)
        };
        (threads, rows.div_ceil(chunks).max(1))
    }

    /// Per query, its best `m` distinct identities (`m <= MAX_SHORTLIST`), best first: one
    /// pass over the rows for all queries, split over threads by chunks of rows.
    fn shortlists(&self, queries: &[Query], int8: bool, m: usize) -> Vec<Vec<Cand>> {
        let rows = self.owners.len();
        let (threads, chunk_rows) = self.chunking(rows);
        let chunks = rows.div_ceil(chunk_rows);
        let per_chunk = queries.len() * m;
        let mut slots = vec![EMPTY; chunks * per_chunk];
        let work = rows.saturating_mul(self.dim).saturating_mul(queries.len());
        let qpack: Vec<i8> = if int8 {
            queries.iter().flat_map(|q| q.q8.iter().copied()).collect()
        } else {
            Vec::new()
        };
        par_chunks_mut_at_most(&mut slots, per_chunk, work, threads, |c, region| {
            let mut lists: Vec<Shortlist> = region.chunks_mut(m).map(Shortlist::new).collect();
            let r0 = c * chunk_rows;
            self.scan(
                queries,
                &qpack,
                int8,
                r0,
                (r0 + chunk_rows).min(rows),
                &mut lists,
            );
        });
        (0..queries.len())
            .map(|qi| {
                let mut out = vec![EMPTY; m];
                let mut list = Shortlist::new(&mut out);
                for c in 0..chunks {
                    let start = c * per_chunk + qi * m;
                    for &cand in slots[start..start + m]
                        .iter()
                        .take_while(|c| c.row != u32::MAX)
                    {
                        list.offer(cand);
                    }
                }
                let len = list.len;
                out.truncate(len);
                out
            })
            .collect()
    }

    /// [`EmbeddingIndex::shortlists`] for one query and any `m`, scoring every row into one
    /// buffer first: for shortlists too long to keep per chunk.
    fn dense_shortlist(&self, q: &Query, int8: bool, m: usize) -> Vec<Cand> {
        let rows = self.owners.len();
        let (threads, chunk_rows) = self.chunking(rows);
        let mut scores = vec![0f32; rows];
        let work = rows.saturating_mul(self.dim);
        par_chunks_mut_at_most(&mut scores, chunk_rows, work, threads, |c, out| {
            for (b, block) in out.chunks_mut(BLOCK_ROWS).enumerate() {
                self.score_block(q, int8, c * chunk_rows + b * BLOCK_ROWS, block);
            }
        });
        let mut best = vec![EMPTY; self.names.len()];
        for (r, (&o, &s)) in self.owners.iter().zip(&scores).enumerate() {
            let b = &mut best[o as usize];
            if s.total_cmp(&b.score) == Ordering::Greater {
                *b = Cand {
                    score: s,
                    owner: o,
                    row: r as u32,
                };
            }
        }
        best.retain(|c| c.row != u32::MAX);
        if m < best.len() {
            best.select_nth_unstable_by(m - 1, rank);
            best.truncate(m);
        }
        best.sort_unstable_by(rank);
        best
    }

    /// The top `k` of each query; every query is validated first.
    fn search_all<Q: AsRef<[f32]>>(
        &self,
        queries: &[Q],
        k: usize,
        precision: SearchPrecision,
        source: Option<&dyn RowSource>,
    ) -> Result<Vec<Vec<Match>>> {
        if self.storage == RowStorage::Int8Only {
            if precision == SearchPrecision::F32 {
                return Err(Error::NoF32Rows(
                    "SearchPrecision::F32 scans every f32 row, and this index keeps int8 rows \
                     only (RowStorage::Int8Only): search Int8, Int8Rerank (with a RowSource) \
                     or Int8Scan"
                        .into(),
                ));
            }
            if precision.needs_f32_rows() && source.is_none() {
                return Err(Error::NoF32Rows(format!(
                    "SearchPrecision::{precision:?} re-scores its shortlist in f32, and this \
                     index keeps int8 rows only (RowStorage::Int8Only): pass a RowSource \
                     (search_with / search_batch_with) or search Int8Scan"
                )));
            }
        }
        self.search_planned(queries, k, Plan::of(precision, k), source)
    }

    fn search_planned<Q: AsRef<[f32]>>(
        &self,
        queries: &[Q],
        k: usize,
        plan: Plan,
        source: Option<&dyn RowSource>,
    ) -> Result<Vec<Vec<Match>>> {
        if k == 0 {
            return Err(Error::InvalidArgument("k must be at least 1".into()));
        }
        let queries = queries
            .iter()
            .map(|v| {
                let f = self.normalized(v.as_ref())?;
                let mut q8 = vec![0i8; self.dim];
                let scale = quantize_row(&f, &mut q8);
                Ok(Query { f, q8, scale })
            })
            .collect::<Result<Vec<_>>>()?;
        if self.names.is_empty() || queries.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let ids = self.names.len();
        let Plan { int8, m, rescore } = plan;
        let m = m.max(k).min(ids);
        let lists: Vec<Vec<Cand>> = if m <= MAX_SHORTLIST {
            queries
                .chunks(BATCH_QUERIES)
                .flat_map(|group| self.shortlists(group, int8, m))
                .collect()
        } else {
            queries
                .iter()
                .map(|q| self.dense_shortlist(q, int8, m))
                .collect()
        };
        let mut fetched = Fetched::new(self.dim, queries.len() > 1);
        queries
            .iter()
            .zip(lists)
            .map(|(q, mut list)| {
                if rescore {
                    for c in &mut list {
                        let r = c.row as usize;
                        c.score = match (self.storage, source) {
                            (RowStorage::F32AndInt8, _) | (_, None) => dot_f32(self.row(r), &q.f),
                            (RowStorage::Int8Only, Some(src)) => {
                                dot_f32(fetched.get(self, src, r)?, &q.f)
                            }
                        };
                    }
                    list.sort_unstable_by(rank);
                }
                list.truncate(k);
                Ok(list
                    .into_iter()
                    .map(|c| Match {
                        name: self.names[c.owner as usize].to_string(),
                        score: c.score,
                    })
                    .collect())
            })
            .collect()
    }

    /// Row `r`'s int8 quants and scale.
    fn i8_row(&self, r: usize) -> (&[i8], f32) {
        (
            &self.i8_rows[r * self.dim..(r + 1) * self.dim],
            self.i8_scales[r],
        )
    }

    /// The `k` identities most similar to `query` (any dimension-matching vector; it is
    /// normalised first), best first; fewer when fewer are enrolled.
    ///
    /// A [`RowStorage::Int8Only`] index answers only [`SearchPrecision::Int8Scan`] here
    /// (the others need `f32` rows: [`EmbeddingIndex::search_with`]); otherwise
    /// [`Error::NoF32Rows`].
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        precision: SearchPrecision,
    ) -> Result<Vec<Match>> {
        Ok(self
            .search_all(&[query], k, precision, None)?
            .pop()
            .unwrap_or_default())
    }

    /// [`EmbeddingIndex::search`], re-scoring with `f32` rows fetched from `source` when
    /// this index keeps none ([`RowStorage::Int8Only`]; with [`RowStorage::F32AndInt8`] the
    /// rows in memory are used and `source` is not called). A row the source cannot supply,
    /// or supplies different from the index's int8 copy, is an [`Error::StaleGallery`].
    /// Given a source with the rows the index was built from, an `Int8Only` index returns
    /// exactly what an `F32AndInt8` one does.
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        precision: SearchPrecision,
        source: &dyn RowSource,
    ) -> Result<Vec<Match>> {
        Ok(self
            .search_all(&[query], k, precision, Some(source))?
            .pop()
            .unwrap_or_default())
    }

    /// [`EmbeddingIndex::search`] for many queries at once (`&[Vec<f32>]` or `&[&[f32]]`):
    /// the same answers, in query order, but every block of rows is scored for up to
    /// [`BATCH_QUERIES`] queries while it is in cache, so the gallery is read once per 32
    /// queries rather than once per query (for a `k` whose shortlist exceeds
    /// [`MAX_SHORTLIST`], once per query as [`EmbeddingIndex::search`] does). All queries
    /// are checked before any is searched.
    pub fn search_batch<Q: AsRef<[f32]>>(
        &self,
        queries: &[Q],
        k: usize,
        precision: SearchPrecision,
    ) -> Result<Vec<Vec<Match>>> {
        self.search_all(queries, k, precision, None)
    }

    /// [`EmbeddingIndex::search_batch`] with `f32` rows from `source`, as
    /// [`EmbeddingIndex::search_with`] (a row shortlisted by several queries is fetched once).
    pub fn search_batch_with<Q: AsRef<[f32]>>(
        &self,
        queries: &[Q],
        k: usize,
        precision: SearchPrecision,
        source: &dyn RowSource,
    ) -> Result<Vec<Vec<Match>>> {
        self.search_all(queries, k, precision, Some(source))
    }
}

/// `f32` rows fetched from a [`RowSource`] for one search, checked against the int8 copy;
/// kept for the other queries of a batch.
struct Fetched {
    dim: usize,
    keep: bool,
    at: HashMap<u32, usize>,
    values: Vec<f32>,
    q8: Vec<i8>,
}

impl Fetched {
    fn new(dim: usize, keep: bool) -> Self {
        Fetched {
            dim,
            keep,
            at: HashMap::new(),
            values: Vec::new(),
            q8: vec![0; dim],
        }
    }

    /// Row `r` of `idx`, from `src` (or from an earlier fetch of this search).
    fn get(&mut self, idx: &EmbeddingIndex, src: &dyn RowSource, r: usize) -> Result<&[f32]> {
        let dim = self.dim;
        let start = match self.at.get(&(r as u32)) {
            Some(&s) => s,
            None => {
                let start = if self.keep { self.values.len() } else { 0 };
                self.values.resize(start + dim, 0.0);
                let out = &mut self.values[start..start + dim];
                let key = idx.keys[r];
                let stale = |reason: &str| Error::StaleGallery {
                    key,
                    reason: reason.to_string(),
                };
                if !src.fetch_row(key, out)? {
                    return Err(stale("is not in the row source"));
                }
                let (quants, scale) = idx.i8_row(r);
                let s = quantize_row(out, &mut self.q8);
                let same_scale = (s - scale).abs() <= 1e-5 * scale; // false for NaN
                if self.q8 != quants || !same_scale {
                    return Err(stale(
                        "in the row source differs from the row the index holds",
                    ));
                }
                if self.keep {
                    self.at.insert(r as u32, start);
                }
                start
            }
        };
        Ok(&self.values[start..start + dim])
    }
}

pub use edgeai_core::quant::dot_f32;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// xorshift* for reproducible random vectors without a dependency.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next_f32(&mut self) -> f32 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            // sum of two uniforms: roughly bell-shaped in -1..1
            let a = (v >> 40) as f32 / (1u64 << 24) as f32;
            let b = ((v >> 16) & 0xff_ffff) as f32 / (1u64 << 24) as f32;
            a + b - 1.0
        }
        pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.next_f32()).collect()
        }
    }

    #[test]
    fn search_finds_the_owner_and_ranks_by_best_embedding() {
        let mut idx = EmbeddingIndex::new(4).unwrap();
        idx.add("a", &[vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]])
            .unwrap();
        idx.add("b", &[vec![0.0, 0.0, 1.0, 0.0]]).unwrap();
        idx.add("c", &[vec![0.7, 0.7, 0.1, 0.0]]).unwrap();
        for p in [SearchPrecision::F32, SearchPrecision::Int8] {
            let m = idx.search(&[0.0, 2.0, 0.0, 0.0], 2, p).unwrap();
            assert_eq!(m.len(), 2);
            assert_eq!(m[0].name, "a");
            assert!((m[0].score - 1.0).abs() < 1e-2, "{m:?}");
            assert_eq!(m[1].name, "c");
            let all = idx.search(&[0.0, 0.0, 1.0, 0.0], 10, p).unwrap();
            assert_eq!(all.len(), 3);
            assert_eq!(all[0].name, "b");
        }
        assert!(idx.search(&[1.0; 3], 1, SearchPrecision::F32).is_err());
        assert!(idx.search(&[0.0; 4], 1, SearchPrecision::F32).is_err());
        assert!(idx.search(&[1.0; 4], 0, SearchPrecision::F32).is_err());
        assert_eq!(idx.remove("a").unwrap(), 2);
        assert_eq!(idx.remove("a").unwrap(), 0);
        let m = idx
            .search(&[0.0, 2.0, 0.0, 0.0], 1, SearchPrecision::Int8)
            .unwrap();
        assert_eq!(m[0].name, "c");
        // "c", the last identity, took the place of the removed "a"
        assert_eq!(
            idx.identities().collect::<Vec<_>>(),
            vec![("c", 1), ("b", 1)]
        );
    }

    #[test]
    fn swap_remove_keeps_every_row_with_its_identity() {
        let dim = 8;
        let mut rng = Rng(3);
        let mut idx = EmbeddingIndex::new(dim).unwrap();
        let mut model: HashMap<String, Vec<Vec<f32>>> = HashMap::new();
        for step in 0..800 {
            let name = format!("p{}", ((rng.next_f32() + 1.0) * 20.0) as usize % 40);
            if step % 3 == 2 {
                let want = model.remove(&name).map_or(0, |v| v.len());
                assert_eq!(idx.remove(&name).unwrap(), want, "step {step}");
            } else {
                let es: Vec<Vec<f32>> = (0..1 + step % 4).map(|_| rng.vec(dim)).collect();
                idx.add(&name, &es).unwrap();
                let normed = es.iter().map(|e| idx.normalized(e).unwrap());
                model.entry(name).or_default().extend(normed);
            }
            assert_eq!(idx.len(), model.len());
            assert_eq!(
                idx.embeddings(),
                model.values().map(Vec::len).sum::<usize>()
            );
            for (i, (name, count)) in idx.identities().enumerate() {
                assert_eq!(model[name].len(), count, "step {step} {name}");
                assert_eq!(idx.by_name[name] as usize, i);
                assert_eq!(idx.rows_of(i as u32).count(), count);
                for r in idx.rows_of(i as u32) {
                    assert_eq!(idx.owners[r as usize] as usize, i);
                }
            }
            for r in 0..idx.embeddings() {
                let name = &*idx.names[idx.owners[r] as usize];
                assert!(model[name].iter().any(|e| e.as_slice() == idx.row(r)));
                let mut q8 = vec![0i8; dim];
                assert_eq!(quantize_row(idx.row(r), &mut q8), idx.i8_scales[r]);
                assert_eq!(q8, idx.i8_rows[r * dim..(r + 1) * dim]);
            }
        }
        assert!(idx.len() > 5);
        for _ in 0..5 {
            let q = rng.vec(dim);
            for p in [
                SearchPrecision::F32,
                SearchPrecision::Int8,
                SearchPrecision::Int8Rerank,
                SearchPrecision::Int8Scan,
            ] {
                assert_eq!(idx.search(&q, 4, p).unwrap(), reference(&idx, &q, 4, p));
            }
        }
        for name in model.keys() {
            idx.remove(name).unwrap();
        }
        assert!(idx.is_empty() && idx.embeddings() == 0);
        assert!(idx
            .search(&[1.0; 8], 3, SearchPrecision::F32)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn threads_give_the_same_answer() {
        let mut rng = Rng(7);
        let mut idx = EmbeddingIndex::new(32).unwrap();
        for i in 0..5000 {
            idx.add(&format!("id{i}"), &[rng.vec(32)]).unwrap();
        }
        let q = rng.vec(32);
        let one = idx.search(&q, 5, SearchPrecision::F32).unwrap();
        idx.set_threads(2).unwrap();
        assert_eq!(idx.search(&q, 5, SearchPrecision::F32).unwrap(), one);
        let i8_two = idx.search(&q, 5, SearchPrecision::Int8).unwrap();
        idx.set_threads(1).unwrap();
        assert_eq!(idx.search(&q, 5, SearchPrecision::Int8).unwrap(), i8_two);
    }

    /// What the chunked scan must return: every row scored alone (the same expressions),
    /// each identity's best (first row on a tie), the best `m` by score then enrolment index,
    /// re-scored in `f32` for `Int8Rerank`.
    fn reference(idx: &EmbeddingIndex, q: &[f32], k: usize, p: SearchPrecision) -> Vec<Match> {
        let qn = idx.normalized(q).unwrap();
        let mut q8 = vec![0i8; idx.dim];
        let qs = quantize_row(&qn, &mut q8);
        let score = |r: usize| match p {
            SearchPrecision::F32 => dot_f32(idx.row(r), &qn),
            _ => {
                let row = &idx.i8_rows[r * idx.dim..(r + 1) * idx.dim];
                edgeai_core::quant::int8::dot_i8(row, &q8) as f32 * (idx.i8_scales[r] * qs)
            }
        };
        let mut best: Vec<Option<(f32, usize)>> = vec![None; idx.len()];
        for r in 0..idx.embeddings() {
            let (s, o) = (score(r), idx.owners[r] as usize);
            if best[o].is_none_or(|(b, _)| s.total_cmp(&b) == Ordering::Greater) {
                best[o] = Some((s, r));
            }
        }
        let mut ids: Vec<(f32, usize, usize)> = best
            .iter()
            .enumerate()
            .filter_map(|(o, b)| b.map(|(s, r)| (s, o, r)))
            .collect();
        let order = |a: &(f32, usize, usize), b: &(f32, usize, usize)| {
            b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
        };
        ids.sort_by(order);
        if matches!(p, SearchPrecision::Int8 | SearchPrecision::Int8Rerank) {
            ids.truncate(Plan::of(p, k).m);
            for c in &mut ids {
                c.0 = dot_f32(idx.row(c.2), &qn);
            }
            ids.sort_by(order);
        }
        ids.truncate(k);
        ids.into_iter()
            .map(|(score, o, _)| Match {
                name: idx.names[o].to_string(),
                score,
            })
            .collect()
    }

    /// A gallery of `n` identities with 1-3 embeddings each; every 7th identity's first
    /// embedding repeats an earlier row exactly (score ties between identities).
    fn random_gallery(n: usize, dim: usize, seed: u64) -> EmbeddingIndex {
        let mut rng = Rng(seed);
        let mut idx = EmbeddingIndex::new(dim).unwrap();
        let mut all: Vec<Vec<f32>> = Vec::new();
        for i in 0..n {
            let count = 1 + i % 3;
            let mut es: Vec<Vec<f32>> = (0..count).map(|_| rng.vec(dim)).collect();
            if i % 7 == 6 {
                es[0] = all[all.len() / 2].clone();
            }
            all.extend(es.iter().cloned());
            idx.add(&format!("id{i}"), &es).unwrap();
        }
        idx
    }

    #[test]
    fn chunked_scan_equals_the_row_by_row_reference() {
        // Up to 4 threads (16 chunks of rows), so the shortlist merge runs on any machine.
        edgeai_core::quant::set_num_threads(4);
        let mut idx = random_gallery(3000, 24, 11);
        let mut rng = Rng(5);
        let queries: Vec<Vec<f32>> = (0..6).map(|_| rng.vec(24)).collect();
        for threads in [1, 4] {
            idx.set_threads(threads).unwrap();
            for p in [
                SearchPrecision::F32,
                SearchPrecision::Int8,
                SearchPrecision::Int8Rerank,
                SearchPrecision::Int8Scan,
            ] {
                // 1..37: chunked shortlists; 300: dense (and 40 for Int8Rerank: m = 320).
                for k in [1, 3, 10, 37, 40, 300, 5000] {
                    for q in &queries {
                        let got = idx.search(q, k, p).unwrap();
                        assert_eq!(got, reference(&idx, q, k, p), "{p:?} k {k} t {threads}");
                        assert_eq!(got.len(), k.min(idx.len()));
                    }
                }
                // an enrolled embedding finds its identity first, with a tie broken by index
                let q = idx.row(3).to_vec();
                assert_eq!(idx.search(&q, 3, p).unwrap(), reference(&idx, &q, 3, p));
            }
        }
        edgeai_core::quant::set_num_threads(0);
    }

    #[test]
    fn batch_search_equals_one_search_per_query() {
        edgeai_core::quant::set_num_threads(4);
        let mut idx = random_gallery(2500, 16, 23);
        idx.set_threads(4).unwrap();
        let mut rng = Rng(9);
        // 70 queries: three passes of up to 32, one query repeated, one an enrolled row.
        let mut queries: Vec<Vec<f32>> = (0..68).map(|_| rng.vec(16)).collect();
        queries.push(queries[3].clone());
        queries.push(idx.row(10).to_vec());
        for p in [
            SearchPrecision::F32,
            SearchPrecision::Int8,
            SearchPrecision::Int8Rerank,
            SearchPrecision::Int8Scan,
        ] {
            for k in [1, 10, 300] {
                let batch = idx.search_batch(&queries, k, p).unwrap();
                assert_eq!(batch.len(), queries.len());
                for (q, got) in queries.iter().zip(&batch) {
                    assert_eq!(got, &idx.search(q, k, p).unwrap(), "{p:?} k {k}");
                }
                let refs: Vec<&[f32]> = queries.iter().map(Vec::as_slice).collect();
                assert_eq!(idx.search_batch(&refs, k, p).unwrap(), batch);
            }
        }
        edgeai_core::quant::set_num_threads(0);
        let none: &[Vec<f32>] = &[];
        assert!(idx
            .search_batch(none, 3, SearchPrecision::F32)
            .unwrap()
            .is_empty());
        let bad = [queries[0].clone(), vec![1.0; 3]];
        assert!(idx.search_batch(&bad, 3, SearchPrecision::F32).is_err());
        assert!(idx.search_batch(&queries, 0, SearchPrecision::F32).is_err());
        let empty = EmbeddingIndex::new(16).unwrap();
        let r = empty
            .search_batch(&queries[..2], 3, SearchPrecision::Int8)
            .unwrap();
        assert_eq!(r, vec![Vec::new(), Vec::new()]);
    }

    #[test]
    fn an_empty_enrolment_creates_no_identity() {
        let mut idx = EmbeddingIndex::new(4).unwrap();
        idx.add("nobody", &[]).unwrap();
        assert!(idx.is_empty() && !idx.contains("nobody"));
        idx.add("a", &[vec![1.0, 0.0, 0.0, 0.0]]).unwrap();
        let m = idx
            .search(&[1.0; 4], 5, SearchPrecision::Int8Rerank)
            .unwrap();
        assert_eq!(m.len(), 1);
    }

    /// The same identities and rows (keys `7 i + 3`) in an `F32AndInt8` and an `Int8Only`
    /// index, some removed, and the normalised rows by key (a source's contents).
    fn twin_indexes(
        n: usize,
        dim: usize,
    ) -> (EmbeddingIndex, EmbeddingIndex, HashMap<u64, Vec<f32>>) {
        let mut rng = Rng(77);
        let mut full = EmbeddingIndex::new(dim).unwrap();
        let mut lean = EmbeddingIndex::with_storage(dim, RowStorage::Int8Only).unwrap();
        let mut rows = HashMap::new();
        let mut key = 3u64;
        for i in 0..n {
            let es: Vec<(u64, Vec<f32>)> = (0..1 + i % 3)
                .map(|_| {
                    key += 7;
                    (key, rng.vec(dim))
                })
                .collect();
            let name = format!("id{i}");
            full.add_keyed(&name, &es).unwrap();
            lean.add_keyed(&name, &es).unwrap();
            for (k, e) in &es {
                rows.insert(*k, full.normalized(e).unwrap());
            }
        }
        for i in (0..n).step_by(5) {
            let name = format!("id{i}");
            let mut keys = full.keys_of(&name);
            keys.sort_unstable();
            let mut lean_keys = lean.keys_of(&name);
            lean_keys.sort_unstable();
            assert_eq!(keys, lean_keys);
            assert_eq!(full.remove(&name).unwrap(), keys.len());
            assert_eq!(lean.remove(&name).unwrap(), keys.len());
            for k in keys {
                rows.remove(&k);
            }
        }
        (full, lean, rows)
    }

    #[test]
    fn int8_only_with_a_source_equals_f32_and_int8() {
        edgeai_core::quant::set_num_threads(4);
        let (mut full, mut lean, rows) = twin_indexes(2500, 20);
        let fetches = std::cell::Cell::new(0usize);
        let source = |key: u64, out: &mut [f32]| -> Result<bool> {
            fetches.set(fetches.get() + 1);
            Ok(rows.get(&key).map(|r| out.copy_from_slice(r)).is_some())
        };
        let mut rng = Rng(5);
        let mut queries: Vec<Vec<f32>> = (0..40).map(|_| rng.vec(20)).collect();
        queries.push(full.row(17).to_vec());
        assert!(lean.heap_bytes() < full.heap_bytes());
        for threads in [1, 4] {
            full.set_threads(threads).unwrap();
            lean.set_threads(threads).unwrap();
            for p in [
                SearchPrecision::Int8,
                SearchPrecision::Int8Rerank,
                SearchPrecision::Int8Scan,
            ] {
                for k in [1, 10, 300] {
                    for q in &queries[..3] {
                        let want = full.search(q, k, p).unwrap();
                        assert_eq!(lean.search_with(q, k, p, &source).unwrap(), want, "{p:?}");
                    }
                    let want = full.search_batch(&queries, k, p).unwrap();
                    fetches.set(0);
                    let got = lean.search_batch_with(&queries, k, p, &source).unwrap();
                    assert_eq!(got, want, "{p:?} k {k}");
                    if p == SearchPrecision::Int8Scan {
                        assert_eq!(fetches.get(), 0);
                        assert_eq!(lean.search_batch(&queries, k, p).unwrap(), want);
                    } else {
                        // each shortlisted row fetched at most once per batch
                        assert!(fetches.get() <= lean.embeddings(), "{}", fetches.get());
                    }
                }
            }
        }
        edgeai_core::quant::set_num_threads(0);
    }

    #[test]
    fn int8_only_without_rows_is_a_clear_error() {
        let (_, lean, mut rows) = twin_indexes(300, 8);
        let q = vec![0.5f32; 8];
        for p in [
            SearchPrecision::F32,
            SearchPrecision::Int8,
            SearchPrecision::Int8Rerank,
        ] {
            let err = lean.search(&q, 3, p).unwrap_err();
            assert!(matches!(err, Error::NoF32Rows(_)), "{err}");
        }
        let empty = |_: u64, _: &mut [f32]| -> Result<bool> { Ok(false) };
        let err = lean
            .search_with(&q, 3, SearchPrecision::F32, &empty)
            .unwrap_err();
        assert!(matches!(err, Error::NoF32Rows(_)), "{err}");
        let err = lean
            .search_with(&q, 3, SearchPrecision::Int8, &empty)
            .unwrap_err();
        assert!(matches!(err, Error::StaleGallery { .. }), "{err}");
        assert!(err.to_string().contains("reopen"), "{err}");
        // a source whose rows changed behind the index
        for r in rows.values_mut() {
            r.reverse();
        }
        let changed = |key: u64, out: &mut [f32]| -> Result<bool> {
            Ok(rows.get(&key).map(|r| out.copy_from_slice(r)).is_some())
        };
        let err = lean
            .search_batch_with(&[q.clone(), q], 3, SearchPrecision::Int8Rerank, &changed)
            .unwrap_err();
        assert!(matches!(err, Error::StaleGallery { .. }), "{err}");
        assert!(err.to_string().contains("differs"), "{err}");
    }

    /// Bytes per identity at 512-d (one embedding each, 12-byte names), as `heap_bytes`
    /// counts them, for each storage: `cargo test -p edgeai-vision bytes_per_identity --
    /// --nocapture` prints them.
    #[test]
    fn bytes_per_identity_at_512_d() {
        let (n, dim) = (2000, 512);
        let mut rng = Rng(1);
        let rows: Vec<Vec<f32>> = (0..n).map(|_| rng.vec(dim)).collect();
        let mut per = Vec::new();
        for storage in [RowStorage::F32AndInt8, RowStorage::Int8Only] {
            let mut idx = EmbeddingIndex::with_storage(dim, storage).unwrap();
            idx.reserve(n, n);
            for (i, r) in rows.iter().enumerate() {
                idx.add(&format!("person{i:06}"), std::slice::from_ref(r))
                    .unwrap();
            }
            let bytes = idx.heap_bytes() as f64 / n as f64;
            println!("{storage:?}: {bytes:.0} bytes per identity at {dim}-d");
            per.push(bytes);
        }
        // 5 dim + 4 + bookkeeping, and dim + 4 + bookkeeping (names, map, links, keys)
        assert!(per[0] > 2564.0 && per[0] < 2700.0, "{per:?}");
        assert!(per[1] > 516.0 && per[1] < 650.0, "{per:?}");
        // a million 512-d faces in int8 only: well under 1 GB
        assert!(per[1] * 1e6 < 0.7e9);
    }

    /// Recall@10 of int8 search against exact f32 search on 100k random 128-d vectors: the
    /// int8 scan alone, `Int8` (+ `f32` re-score of k + 16) and `Int8Rerank` (of 8k).
    #[test]
    fn int8_recall_at_10_vs_f32_on_100k_vectors() {
        let (n, dim, queries, k) = (100_000, 128, 100, 10);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut idx = EmbeddingIndex::new(dim).unwrap();
        idx.set_threads(2).unwrap();
        for i in 0..n {
            idx.add(&i.to_string(), &[rng.vec(dim)]).unwrap();
        }
        let qs: Vec<Vec<f32>> = (0..queries).map(|_| rng.vec(dim)).collect();
        let exact = idx.search_batch(&qs, k, SearchPrecision::F32).unwrap();
        let recall = |plan: Plan| {
            let t = std::time::Instant::now();
            let got = idx.search_planned(&qs, k, plan, None).unwrap();
            let per_query = t.elapsed() / queries as u32;
            let hits: usize = exact
                .iter()
                .zip(&got)
                .map(|(e, g)| {
                    e.iter()
                        .filter(|m| g.iter().any(|a| a.name == m.name))
                        .count()
                })
                .sum();
            (hits as f64 / (queries * k) as f64, per_query)
        };
        let scan_only = Plan {
            int8: true,
            m: k,
            rescore: false,
        };
        let (r_scan, t_scan) = recall(scan_only);
        let extra = |m| Plan {
            m,
            rescore: true,
            ..scan_only
        };
        let (r_2k, t_2k) = recall(extra(2 * k));
        let (r_int8, t_int8) = recall(Plan::of(SearchPrecision::Int8, k));
        let (r_rerank, t_rerank) = recall(Plan::of(SearchPrecision::Int8Rerank, k));
        println!(
            "recall@{k} vs f32 over {queries} random queries, {n} x {dim} (batched): int8 scan \
             {r_scan:.4} ({t_scan:?}/query), +f32 re-score of 2k {r_2k:.4} ({t_2k:?}), \
             Int8 (k + 16) {r_int8:.4} ({t_int8:?}), Int8Rerank (8k) {r_rerank:.4} ({t_rerank:?})"
        );
        // Random vectors are the hard case: the top-10 scores are ~2e-3 apart, the int8
        // error ~1e-3, so the int8 scan alone swaps some boundary pairs; re-scoring a short
        // list in f32 puts them back.
        assert!(r_scan >= 0.95, "int8 scan recall {r_scan}");
        assert!(r_int8 >= 0.99, "Int8 recall {r_int8}");
        assert!(r_rerank >= 0.99, "Int8Rerank recall {r_rerank}");
    }
}
