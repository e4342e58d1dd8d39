//! Per-row symmetric int8 matrices (one `f32` scale per row), e.g. for face-embedding
//! galleries: 4x smaller than `f32`, scored with SIMD integer dot products.
//!
//! Quantization: `scale = max|x| / 127`, `q = round(x / scale)` in `-127..=127`.

use super::dispatch::{self, KernelPath};
use crate::{Error, Result};

/// Quantizes `src` into `dst` and returns the scale (`0.0` for an all-zero or non-finite
/// maximum, then `dst` is zero). Only `min(src.len(), dst.len())` elements are written.
pub fn quantize_row(src: &[f32], dst: &mut [i8]) -> f32 {
    let amax = src.iter().fold(0f32, |a, v| a.max(v.abs()));
    if amax == 0.0 || !amax.is_finite() {
        dst.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let scale = amax / 127.0;
    let inv = 127.0 / amax;
    for (q, &v) in dst.iter_mut().zip(src) {
        *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

/// Exact `i8` dot product of the first `min(a.len(), b.len())` elements, on the current
/// kernel path.
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    (dispatch::current().i8)(a, b)
}

/// [`dot_i8`] on an explicit kernel path (an error if unavailable); for tests and benches.
pub fn dot_i8_with(path: KernelPath, a: &[i8], b: &[i8]) -> Result<i32> {
    Ok((dispatch::kernels(path)?.i8)(a, b))
}

/// Exact `i8` dot products of many contiguous rows with one vector in one call, on the
/// current kernel path: `out[r] = dot_i8(&rows[r * dim..(r + 1) * dim], q)` for every
/// `r < n = min(out.len(), rows.len() / dim)` (`n = 0` when `dim == 0`); returns `n` and
/// leaves the rest of `out` as it was. Bit-identical to [`dot_i8`] per row, without a call
/// per row (the SIMD paths also share each load of `q` between rows).
///
/// ```
/// use edgeai_core::quant::int8::dot_i8_rows;
/// let rows = [1i8, 2, 3, -4, 5, 6];
/// let mut out = [0i32; 3];
/// assert_eq!(dot_i8_rows(&rows, 2, &[10, 1], &mut out), 3);
/// assert_eq!(out, [12, 26, 56]);
/// ```
pub fn dot_i8_rows(rows: &[i8], dim: usize, q: &[i8], out: &mut [i32]) -> usize {
    i8_rows_on(dispatch::current(), rows, dim, q, out)
}

/// [`dot_i8_rows`] on an explicit kernel path (an error if unavailable); for tests and
/// benches.
pub fn dot_i8_rows_with(
    path: KernelPath,
    rows: &[i8],
    dim: usize,
    q: &[i8],
    out: &mut [i32],
) -> Result<usize> {
    Ok(i8_rows_on(dispatch::kernels(path)?, rows, dim, q, out))
}

fn i8_rows_on(k: &dispatch::Kernels, rows: &[i8], dim: usize, q: &[i8], out: &mut [i32]) -> usize {
    if dim == 0 {
        return 0;
    }
    let n = out.len().min(rows.len() / dim);
    let (rows, out) = (&rows[..n * dim], &mut out[..n]);
    match k.i8_rows {
        Some(f) => f(rows, dim, q, out),
        None => {
            for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
                *o = (k.i8)(row, q);
            }
        }
    }
    n
}

/// Exact `i8` dot products of several queries with several rows in one call, on the
/// current kernel path: with `nr = rows.len() / dim` rows and `nq = queries.len() / dim`
/// queries (each exactly `dim` long, one after the other),
/// `out[j * nr + r] = dot_i8(&rows[r * dim..(r + 1) * dim], &queries[j * dim..(j + 1) * dim])`.
/// Bit-identical to [`dot_i8`] per pair; the SIMD paths score a tile of queries x rows per
/// pass, so each row is loaded once for several queries (a batch of gallery searches reads
/// the rows from cache once per tile of queries instead of once per query).
///
/// Errors (writing nothing) when `dim == 0`, `rows` or `queries` is not a whole number of
/// `dim`-long vectors, or `out.len() != nq * nr`.
///
/// ```
/// use edgeai_core::quant::int8::dot_i8_tile;
/// let rows = [1i8, 2, 3, -4, 5, 6];
/// let queries = [10i8, 1, -1, 0];
/// let mut out = [0i32; 6];
/// dot_i8_tile(&rows, &queries, 2, &mut out).unwrap();
/// assert_eq!(out, [12, 26, 56, -1, -3, -5]);
/// ```
pub fn dot_i8_tile(rows: &[i8], queries: &[i8], dim: usize, out: &mut [i32]) -> Result<()> {
    i8_tile_on(dispatch::current(), rows, queries, dim, out)
}

/// [`dot_i8_tile`] on an explicit kernel path (an error if unavailable); for tests and
/// benches.
pub fn dot_i8_tile_with(
    path: KernelPath,
    rows: &[i8],
    queries: &[i8],
    dim: usize,
    out: &mut [i32],
) -> Result<()> {
    i8_tile_on(dispatch::kernels(path)?, rows, queries, dim, out)
}

fn i8_tile_on(
    k: &dispatch::Kernels,
    rows: &[i8],
    queries: &[i8],
    dim: usize,
    out: &mut [i32],
) -> Result<()> {
    if dim == 0 || !rows.len().is_multiple_of(dim) || !queries.len().is_multiple_of(dim) {
        return Err(Error::Kernel(format!(
            "dot_i8_tile: {} row values and {} query values are not whole {dim}-long vectors",
            rows.len(),
            queries.len()
        )));
    }
    let (nr, nq) = (rows.len() / dim, queries.len() / dim);
    if Some(out.len()) != nr.checked_mul(nq) {
        return Err(Error::Kernel(format!(
            "dot_i8_tile: {} outputs for {nq} queries x {nr} rows",
            out.len()
        )));
    }
    (k.i8_tile)(rows, queries, dim, out);
    Ok(())
}

/// Cosine similarity of two int8 vectors (scales cancel); `0.0` if either is all zero.
pub fn cosine_i8(a: &[i8], b: &[i8]) -> f32 {
    let ab = dot_i8(a, b) as f64;
    let aa = dot_i8(a, a) as f64;
    let bb = dot_i8(b, b) as f64;
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

/// A row-major int8 matrix with one scale per row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct I8Matrix {
    rows: usize,
    cols: usize,
    data: Vec<i8>,
    scales: Vec<f32>,
}

impl I8Matrix {
    /// An empty matrix with rows of `cols`.
    pub fn new(cols: usize) -> Self {
        Self {
            cols,
            ..Self::default()
        }
    }

    /// Quantizes `rows x cols` floats (row-major).
    pub fn from_f32(rows: usize, cols: usize, data: &[f32]) -> Result<Self> {
        if Some(data.len()) != rows.checked_mul(cols) {
            return Err(Error::Kernel(format!(
                "I8Matrix::from_f32: {} values for {rows}x{cols}",
                data.len()
            )));
        }
        let mut m = Self::new(cols);
        m.data.reserve(data.len());
        m.scales.reserve(rows);
        if cols > 0 {
            for row in data.chunks_exact(cols) {
                m.push_row(row)?;
            }
        } else {
            m.rows = rows;
            m.scales = vec![0.0; rows];
        }
        Ok(m)
    }

    /// Appends one row (`cols` long).
    pub fn push_row(&mut self, row: &[f32]) -> Result<()> {
        if row.len() != self.cols {
            return Err(Error::Kernel(format!(
                "I8Matrix::push_row: row has {} values, matrix has {} columns",
                row.len(),
                self.cols
            )));
        }
        let start = self.data.len();
        self.data.resize(start + self.cols, 0);
        let s = quantize_row(row, &mut self.data[start..]);
        self.scales.push(s);
        self.rows += 1;
        Ok(())
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r`'s quants and scale (empty and `0.0` if out of range).
    pub fn row(&self, r: usize) -> (&[i8], f32) {
        if r >= self.rows {
            return (&[], 0.0);
        }
        (
            &self.data[r * self.cols..(r + 1) * self.cols],
            self.scales[r],
        )
    }

    /// `scores[r] ≈ dot(row r, q)`: `q` is quantized the same way, the integer dots are exact,
    /// then scaled by both scales. Multi-threaded over rows for large matrices.
    pub fn dot_all(&self, q: &[f32], scores: &mut [f32]) -> Result<()> {
        if q.len() != self.cols || scores.len() != self.rows {
            return Err(Error::Kernel(format!(
                "I8Matrix::dot_all: query has {} values (want {}), scores {} (want {})",
                q.len(),
                self.cols,
                scores.len(),
                self.rows
            )));
        }
        let mut qq = vec![0i8; self.cols];
        let qs = quantize_row(q, &mut qq);
        let dot = dispatch::current().i8;
        let work = self.rows.saturating_mul(self.cols);
        let out = super::threads::OutPtr::new(scores);
        super::threads::for_rows(self.rows, 1, work, out, |r, _| {
            let (row, s) = self.row(r);
            dot(row, &qq) as f32 * (s * qs)
        });
        Ok(())
    }
}
