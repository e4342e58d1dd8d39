//! In-memory embedding search: exact `f32` cosine scores or per-row int8 scores (with
//! edgeai-core's int8 kernels), top-k identities, optionally split over the kernels' threads.
//!
//! A search reads the rows once, in blocks of [`BLOCK_ROWS`] (one kernel call per block),
//! and keeps, per chunk of rows, only a bounded shortlist of the best identities (each with
//! its best row so far); the chunks' shortlists are merged at the end. Nothing per row or
//! per identity is allocated, except for shortlists longer than [`MAX_SHORTLIST`] (a `k`
//! in the hundreds), which take a dense scan.

use std::cmp::Ordering;
use std::collections::HashMap;

use edgeai_core::quant::int8::{dot_i8_rows, quantize_row};
use edgeai_core::quant::{num_threads, par_chunks_mut_at_most};

use crate::embed::l2_normalize;
use crate::{Error, Result};

/// Precision of gallery search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchPrecision {
    /// Exact `f32` dot products of L2-normalised vectors.
    #[default]
    F32,
    /// Per-row symmetric int8 vectors (4x less memory traffic), integer dot products, then
    /// the best `k + 16` identities ([`INT8_RESCORE_EXTRA`], each by its best int8 row)
    /// re-scored in `f32`: the int8 scores are about 1e-3 off, enough to swap near-ties at
    /// the edge of the top k, and the short re-score puts them back (recall@10 1.000 vs
    /// 0.982 without it, 100 random queries on 100k random 128-d vectors) for 26 more
    /// `f32` dot products per query at k = 10.
    /// The scores returned are exact `f32` cosines.
    Int8,
    /// An int8 scan, then the best `max(8 k, 64)` identities (each by its best int8 row)
    /// re-scored exactly in `f32`: int8's scan speed with (near-)exact ranking; the scores
    /// returned are exact `f32` cosines.
    Int8Rerank,
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
/// batches take several passes, keeping the shortlists of one pass in cache).
pub const BATCH_QUERIES: usize = 32;

/// The longest shortlist kept per chunk of rows; longer ones (large `k`) scan densely.
pub const MAX_SHORTLIST: usize = 256;

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
/// best embedding's score.
pub struct EmbeddingIndex {
    dim: usize,
    names: Vec<String>,
    by_name: HashMap<String, usize>,
    /// The rows of each identity (any order).
    rows_of: Vec<Vec<u32>>,
    owners: Vec<u32>,
    f32_rows: Vec<f32>,
    i8_rows: Vec<i8>,
    i8_scales: Vec<f32>,
    threads: usize,
}

impl std::fmt::Debug for EmbeddingIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingIndex")
            .field("dim", &self.dim)
            .field("identities", &self.names.len())
            .field("embeddings", &self.owners.len())
            .field("threads", &self.threads)
            .finish()
    }
}

impl EmbeddingIndex {
    /// An empty index of `dim`-dimensional embeddings, searched on one thread.
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument("embedding dimension 0".into()));
        }
        Ok(EmbeddingIndex {
            dim,
            names: Vec::new(),
            by_name: HashMap::new(),
            rows_of: Vec::new(),
            owners: Vec::new(),
            f32_rows: Vec::new(),
            i8_rows: Vec::new(),
            i8_scales: Vec::new(),
            threads: 1,
        })
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
            .map(String::as_str)
            .zip(self.rows_of.iter().map(Vec::len))
    }

    /// Whether identity `name` is enrolled.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
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

    /// Appends one normalised row owned by identity `owner`.
    fn push_row(&mut self, e: &[f32], owner: u32) {
        let start = self.i8_rows.len();
        self.i8_rows.resize(start + self.dim, 0);
        self.i8_scales
            .push(quantize_row(e, &mut self.i8_rows[start..]));
        self.f32_rows.extend_from_slice(e);
        self.owners.push(owner);
    }

    /// Adds embeddings to identity `name` (created if new). All are checked before any is
    /// added; an empty `embeddings` adds nothing (and creates no identity).
    pub fn add(&mut self, name: &str, embeddings: &[Vec<f32>]) -> Result<()> {
        let normed = embeddings
            .iter()
            .map(|e| self.normalized(e))
            .collect::<Result<Vec<_>>>()?;
        if normed.is_empty() {
            return Ok(());
        }
        if self.owners.len() + normed.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(
                "more than 2^32 - 1 embeddings".into(),
            ));
        }
        let id = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                if self.names.len() >= u32::MAX as usize {
                    return Err(Error::InvalidArgument(
                        "more than 2^32 - 1 identities".into(),
                    ));
                }
                self.by_name.insert(name.to_string(), self.names.len());
                self.names.push(name.to_string());
                self.rows_of.push(Vec::new());
                self.names.len() - 1
            }
        };
        for e in normed {
            self.rows_of[id].push(self.owners.len() as u32);
            self.push_row(&e, id as u32);
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
        let mut rows = std::mem::take(&mut self.rows_of[id]);
        // Highest first: the last row is then never one of `id`'s (those above are gone).
        rows.sort_unstable_by(|a, b| b.cmp(a));
        for &r in &rows {
            self.swap_remove_row(r as usize);
        }
        self.names.swap_remove(id);
        self.rows_of.swap_remove(id);
        if let Some(moved) = self.names.get(id) {
            if let Some(slot) = self.by_name.get_mut(moved) {
                *slot = id;
            }
            for &r in &self.rows_of[id] {
                self.owners[r as usize] = id as u32;
            }
        }
        Ok(rows.len())
    }

    /// Moves the last row into row `r` (updating its identity's row list) and drops it.
    fn swap_remove_row(&mut self, r: usize) {
        let Some(last) = self.owners.len().checked_sub(1) else {
            return;
        };
        let dim = self.dim;
        if r < last {
            self.f32_rows
                .copy_within(last * dim..(last + 1) * dim, r * dim);
            self.i8_rows
                .copy_within(last * dim..(last + 1) * dim, r * dim);
            self.i8_scales[r] = self.i8_scales[last];
            let o = self.owners[last];
            self.owners[r] = o;
            if let Some(x) = self.rows_of[o as usize]
                .iter_mut()
                .find(|x| **x == last as u32)
            {
                *x = r as u32;
            }
        }
        self.f32_rows.truncate(last * dim);
        self.i8_rows.truncate(last * dim);
        self.i8_scales.truncate(last);
        self.owners.truncate(last);
    }

    /// Row `r`'s `f32` values.
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
            dot_i8_rows(rows, dim, &q.q8, &mut dots[..n]);
            for ((s, &d), &rs) in out.iter_mut().zip(&dots).zip(&self.i8_scales[r0..]) {
                *s = d as f32 * (rs * q.scale);
            }
        } else {
            for (i, s) in out.iter_mut().enumerate() {
                *s = dot_f32(self.row(r0 + i), &q.f);
            }
        }
    }

    /// Offers rows `r0..r1` to every query's shortlist (`lists[i]` for `queries[i]`), one
    /// block of rows at a time, all queries per block.
    fn scan(&self, queries: &[Query], int8: bool, r0: usize, r1: usize, lists: &mut [Shortlist]) {
        let mut scores = [0f32; BLOCK_ROWS];
        let mut b0 = r0;
        while b0 < r1 {
            let n = (r1 - b0).min(BLOCK_ROWS);
            for (q, list) in queries.iter().zip(lists.iter_mut()) {
                self.score_block(q, int8, b0, &mut scores[..n]);
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
        par_chunks_mut_at_most(&mut slots, per_chunk, work, threads, |c, region| {
            let mut lists: Vec<Shortlist> = region.chunks_mut(m).map(Shortlist::new).collect();
            let r0 = c * chunk_rows;
            self.scan(queries, int8, r0, (r0 + chunk_rows).min(rows), &mut lists);
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
    ) -> Result<Vec<Vec<Match>>> {
        self.search_planned(queries, k, Plan::of(precision, k))
    }

    fn search_planned<Q: AsRef<[f32]>>(
        &self,
        queries: &[Q],
        k: usize,
        plan: Plan,
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
        Ok(queries
            .iter()
            .zip(lists)
            .map(|(q, mut list)| {
                if rescore {
                    for c in &mut list {
                        c.score = dot_f32(self.row(c.row as usize), &q.f);
                    }
                    list.sort_unstable_by(rank);
                }
                list.truncate(k);
                list.into_iter()
                    .map(|c| Match {
                        name: self.names[c.owner as usize].clone(),
                        score: c.score,
                    })
                    .collect()
            })
            .collect())
    }

    /// The `k` identities most similar to `query` (any dimension-matching vector; it is
    /// normalised first), best first; fewer when fewer are enrolled.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        precision: SearchPrecision,
    ) -> Result<Vec<Match>> {
        Ok(self
            .search_all(&[query], k, precision)?
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
        self.search_all(queries, k, precision)
    }
}

pub use edgeai_core::quant::dot_f32;

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift* for reproducible random vectors without a dependency.
    pub(crate) struct Rng(u64);
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
                assert_eq!(idx.by_name[name], i);
                for &r in &idx.rows_of[i] {
                    assert_eq!(idx.owners[r as usize] as usize, i);
                }
            }
            for r in 0..idx.embeddings() {
                let name = &idx.names[idx.owners[r] as usize];
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
        if p != SearchPrecision::F32 {
            ids.truncate(Plan::of(p, k).m);
            for c in &mut ids {
                c.0 = dot_f32(idx.row(c.2), &qn);
            }
            ids.sort_by(order);
        }
        ids.truncate(k);
        ids.into_iter()
            .map(|(score, o, _)| Match {
                name: idx.names[o].clone(),
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
            let got = idx.search_planned(&qs, k, plan).unwrap();
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
