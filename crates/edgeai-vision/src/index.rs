//! In-memory embedding search: exact `f32` cosine scores or per-row int8 scores (with
//! edgeai-core's int8 kernels), top-k identities, optionally split over threads.

use std::collections::HashMap;

use edgeai_core::quant::int8::{dot_i8, quantize_row, I8Matrix};
use edgeai_core::quant::par_chunks_mut_at_most;

use crate::embed::l2_normalize;
use crate::{Error, Result};

/// Precision of gallery search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchPrecision {
    /// Exact `f32` dot products of L2-normalised vectors.
    #[default]
    F32,
    /// Per-row symmetric int8 vectors (4x less memory traffic), integer dot products; scores
    /// differ from `f32` by about 1e-3, so near-ties may swap order.
    Int8,
    /// An int8 scan, then the best `max(8 k, 64)` embeddings re-scored exactly in `f32`:
    /// int8's scan speed with (near-)exact ranking.
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

/// Rows per work item when a search is split over threads.
const CHUNK_ROWS: usize = 2048;

/// L2-normalised embeddings of named identities, searchable by cosine similarity.
///
/// Each identity may hold several embeddings (several photos); its score for a query is its
/// best embedding's score.
pub struct EmbeddingIndex {
    dim: usize,
    names: Vec<String>,
    by_name: HashMap<String, usize>,
    counts: Vec<usize>,
    owners: Vec<u32>,
    f32_rows: Vec<f32>,
    i8_rows: I8Matrix,
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
            counts: Vec::new(),
            owners: Vec::new(),
            f32_rows: Vec::new(),
            i8_rows: I8Matrix::new(dim),
            threads: 1,
        })
    }

    /// Searches on at most `threads` threads (`0` counts as 1; 1 = the calling thread only).
    ///
    /// The threads are the kernels' (edgeai-core's one pool, the caller included, sized by
    /// [`edgeai_core::quant::set_num_threads`]): a search never uses more than
    /// [`edgeai_core::quant::num_threads`] of them, whatever is set here, and small
    /// galleries are scanned on the calling thread alone. Never fails (the `Result` is kept
    /// for compatibility with the former private pool).
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

    /// `(name, embedding count)` per identity, in enrolment order.
    pub fn identities(&self) -> impl Iterator<Item = (&str, usize)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.counts.iter().copied())
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

    /// Adds embeddings to identity `name` (created if new). All are checked before any is
    /// added.
    pub fn add(&mut self, name: &str, embeddings: &[Vec<f32>]) -> Result<()> {
        let normed = embeddings
            .iter()
            .map(|e| self.normalized(e))
            .collect::<Result<Vec<_>>>()?;
        let id = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.by_name.insert(name.to_string(), self.names.len());
                self.names.push(name.to_string());
                self.counts.push(0);
                self.names.len() - 1
            }
        };
        let owner = u32::try_from(id)
            .map_err(|_| Error::InvalidArgument("more than 2^32 identities".into()))?;
        for e in normed {
            self.i8_rows.push_row(&e)?;
            self.f32_rows.extend_from_slice(&e);
            self.owners.push(owner);
            self.counts[id] += 1;
        }
        Ok(())
    }

    /// Removes identity `name` and its embeddings; returns how many embeddings it had (0 if
    /// it was not there).
    pub fn remove(&mut self, name: &str) -> Result<usize> {
        let Some(&id) = self.by_name.get(name) else {
            return Ok(0);
        };
        let removed = self.counts[id];
        let mut f32_rows = Vec::with_capacity(self.f32_rows.len());
        let mut owners = Vec::with_capacity(self.owners.len());
        let mut i8_rows = I8Matrix::new(self.dim);
        for (row, &o) in self.f32_rows.chunks_exact(self.dim).zip(&self.owners) {
            let o = o as usize;
            if o == id {
                continue;
            }
            f32_rows.extend_from_slice(row);
            i8_rows.push_row(row)?;
            owners.push(if o > id { o as u32 - 1 } else { o as u32 });
        }
        self.names.remove(id);
        self.counts.remove(id);
        self.by_name = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        self.f32_rows = f32_rows;
        self.owners = owners;
        self.i8_rows = i8_rows;
        Ok(removed)
    }

    /// Scores every embedding row against the normalised query.
    fn score_rows(&self, q: &[f32], precision: SearchPrecision) -> Vec<f32> {
        let rows = self.owners.len();
        let mut scores = vec![0f32; rows];
        let dim = self.dim;
        match precision {
            SearchPrecision::F32 => {
                let work = |(c, out): (usize, &mut [f32])| {
                    let base = c * CHUNK_ROWS;
                    for (i, s) in out.iter_mut().enumerate() {
                        let r = base + i;
                        *s = dot_f32(&self.f32_rows[r * dim..(r + 1) * dim], q);
                    }
                };
                self.for_chunks(&mut scores, work);
            }
            SearchPrecision::Int8 | SearchPrecision::Int8Rerank => {
                let mut qq = vec![0i8; dim];
                let qs = quantize_row(q, &mut qq);
                let work = |(c, out): (usize, &mut [f32])| {
                    let base = c * CHUNK_ROWS;
                    for (i, s) in out.iter_mut().enumerate() {
                        let (row, rs) = self.i8_rows.row(base + i);
                        *s = dot_i8(row, &qq) as f32 * (rs * qs);
                    }
                };
                self.for_chunks(&mut scores, work);
            }
        }
        scores
    }

    fn for_chunks<F>(&self, scores: &mut [f32], work: F)
    where
        F: Fn((usize, &mut [f32])) + Send + Sync,
    {
        let work_size = scores.len().saturating_mul(self.dim);
        par_chunks_mut_at_most(scores, CHUNK_ROWS, work_size, self.threads, |c, out| {
            work((c, out))
        });
    }

    /// Keeps the `shortlist` best rows, re-scored exactly; every other row gets -inf.
    fn rerank(&self, q: &[f32], scores: &mut [f32], shortlist: usize) {
        if shortlist >= scores.len() {
            for (r, s) in scores.iter_mut().enumerate() {
                *s = dot_f32(&self.f32_rows[r * self.dim..(r + 1) * self.dim], q);
            }
            return;
        }
        let mut rows: Vec<u32> = (0..scores.len() as u32).collect();
        rows.select_nth_unstable_by(shortlist - 1, |a, b| {
            scores[*b as usize].total_cmp(&scores[*a as usize])
        });
        rows.truncate(shortlist);
        scores.iter_mut().for_each(|s| *s = f32::NEG_INFINITY);
        for r in rows {
            let r = r as usize;
            scores[r] = dot_f32(&self.f32_rows[r * self.dim..(r + 1) * self.dim], q);
        }
    }

    /// The `k` identities most similar to `query` (any dimension-matching vector; it is
    /// normalised first), best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        precision: SearchPrecision,
    ) -> Result<Vec<Match>> {
        if k == 0 {
            return Err(Error::InvalidArgument("k must be at least 1".into()));
        }
        let q = self.normalized(query)?;
        if self.names.is_empty() {
            return Ok(Vec::new());
        }
        let mut scores = self.score_rows(&q, precision);
        if precision == SearchPrecision::Int8Rerank {
            self.rerank(&q, &mut scores, k.saturating_mul(8).max(64));
        }
        let mut best = vec![f32::NEG_INFINITY; self.names.len()];
        for (&o, &s) in self.owners.iter().zip(&scores) {
            let b = &mut best[o as usize];
            if s > *b {
                *b = s;
            }
        }
        let mut ids: Vec<usize> = (0..best.len()).collect();
        let by_score = |a: &usize, b: &usize| best[*b].total_cmp(&best[*a]).then(a.cmp(b));
        if k < ids.len() {
            ids.select_nth_unstable_by(k - 1, by_score);
            ids.truncate(k);
        }
        ids.sort_unstable_by(by_score);
        Ok(ids
            .into_iter()
            .map(|i| Match {
                name: self.names[i].clone(),
                score: best[i],
            })
            .collect())
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
        assert_eq!(
            idx.identities().collect::<Vec<_>>(),
            vec![("b", 1), ("c", 1)]
        );
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

    /// Recall@10 of int8 search against exact f32 search on 100k random 128-d vectors.
    #[test]
    fn int8_recall_at_10_vs_f32_on_100k_vectors() {
        let (n, dim, queries, k) = (100_000, 128, 50, 10);
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut idx = EmbeddingIndex::new(dim).unwrap();
        idx.set_threads(2).unwrap();
        for i in 0..n {
            idx.add(&i.to_string(), &[rng.vec(dim)]).unwrap();
        }
        let (mut hits, mut hits_rerank) = (0, 0);
        for _ in 0..queries {
            let q = rng.vec(dim);
            let exact = idx.search(&q, k, SearchPrecision::F32).unwrap();
            let count = |approx: &[Match]| {
                exact
                    .iter()
                    .filter(|m| approx.iter().any(|a| a.name == m.name))
                    .count()
            };
            hits += count(&idx.search(&q, k, SearchPrecision::Int8).unwrap());
            hits_rerank += count(&idx.search(&q, k, SearchPrecision::Int8Rerank).unwrap());
        }
        let recall = hits as f64 / (queries * k) as f64;
        let recall_rerank = hits_rerank as f64 / (queries * k) as f64;
        println!(
            "recall@{k} vs f32 over {queries} random queries, {n} x {dim}: \
             int8 {recall:.4}, int8+rerank {recall_rerank:.4}"
        );
        // Random vectors are the hard case: the top-10 scores are ~2e-3 apart, the int8
        // error ~1e-3, so pure int8 swaps some boundary pairs.
        assert!(recall >= 0.95, "pure int8 recall {recall}");
        assert!(
            recall_rerank >= 0.99,
            "int8 + rerank recall {recall_rerank}"
        );
    }
}
