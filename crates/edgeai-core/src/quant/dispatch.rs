//! Runtime selection of the kernel path (scalar or a SIMD instruction set).

use std::sync::atomic::{AtomicU8, Ordering};

use super::blocks::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use super::packed::TILE;
use super::vector::VectorKernels;
use super::{scalar, GgmlType};
use crate::{Error, Result};

/// An instruction-set path of the quantized kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPath {
    /// Portable Rust, the reference.
    Scalar,
    /// x86_64 AVX2 + FMA.
    Avx2,
    /// x86_64 AVX-VNNI (256-bit `vpdpbusd`).
    AvxVnni,
    /// x86_64 AVX-512 VNNI.
    Avx512Vnni,
    /// aarch64 NEON.
    Neon,
    /// aarch64 NEON + `sdot` (dotprod).
    NeonDotprod,
    /// aarch64 NEON + `smmla` (i8mm).
    NeonI8mm,
}

impl KernelPath {
    /// All paths, worst to best.
    pub const ALL: [KernelPath; 7] = [
        KernelPath::Scalar,
        KernelPath::Neon,
        KernelPath::NeonDotprod,
        KernelPath::NeonI8mm,
        KernelPath::Avx2,
        KernelPath::AvxVnni,
        KernelPath::Avx512Vnni,
    ];

    /// Lower-case name, as accepted by `EDGEAI_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::AvxVnni => "avxvnni",
            KernelPath::Avx512Vnni => "avx512vnni",
            KernelPath::Neon => "neon",
            KernelPath::NeonDotprod => "dotprod",
            KernelPath::NeonI8mm => "i8mm",
        }
    }

    /// Parses a name (case-insensitive; `-`/`_` ignored).
    pub fn from_name(s: &str) -> Option<Self> {
        let s: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        let s = match s.as_str() {
            "neondotprod" => "dotprod",
            "neoni8mm" => "i8mm",
            other => other,
        }
        .to_string();
        Self::ALL.into_iter().find(|p| p.name() == s)
    }

    fn index(self) -> u8 {
        Self::ALL.iter().position(|p| *p == self).unwrap_or(0) as u8
    }
}

impl std::fmt::Display for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub(crate) type X4Q4_0 = fn(&[BlockQ4_0], [&[BlockQ8_0]; 4]) -> [f32; 4];
pub(crate) type X4Q4_1 = fn(&[BlockQ4_1], [&[BlockQ8_0]; 4], [&[f32]; 4]) -> [f32; 4];
pub(crate) type X4Q8_0 = fn(&[BlockQ8_0], [&[BlockQ8_0]; 4]) -> [f32; 4];
pub(crate) type X4Q4K = fn(&[BlockQ4K], [&[BlockQ8K]; 4]) -> [f32; 4];

/// Two weight rows times four tokens (`out[row][token]`); the sums are Q4_1's (ignored
/// elsewhere). Must give bit-identical results to the path's one-row kernel.
pub(crate) type P2x4<W> = fn([&[W]; 2], [&[BlockQ8_0]; 4], [&[f32]; 4]) -> [[f32; 4]; 2];

/// A unit of one or two packed tiles (`data`, `tile_bytes` each) of a Q8_0 / Q4_0 / Q4_1
/// [`PackedMatrix`](super::PackedMatrix) against Q8_0 activations, their sums and integer sums.
/// The last argument, `stream`, says this pass is the unit's last (its bytes are not read
/// again this product, so they come from memory): a kernel may then prefetch ahead, past the
/// unit, which must not change any output.
pub(crate) type PackedQ8 =
    fn(GgmlType, &[u8], usize, &[BlockQ8_0], &[f32], &[i32], bool) -> [[f32; TILE]; 2];
/// A unit of one or two packed Q4_K (or Q6_K) tiles against Q8_K activations (`stream` as
/// for [`PackedQ8`]).
pub(crate) type PackedQ8K = fn(&[u8], usize, &[BlockQ8K], bool) -> [[f32; TILE]; 2];

/// One kernel per operation, for one path.
pub(crate) struct Kernels {
    pub q4_0: fn(&[BlockQ4_0], &[BlockQ8_0]) -> f32,
    /// Four activations per weight row (None: call the single kernel 4 times). Must give
    /// bit-identical results to the single kernel.
    pub q4_0_x4: Option<X4Q4_0>,
    pub q4_1_x4: Option<X4Q4_1>,
    pub q8_0_x4: Option<X4Q8_0>,
    pub q4k_x4: Option<X4Q4K>,
    /// Two rows by four tokens (the i8mm path), preferred over the `_x4` kernels for `n > 1`.
    pub q4_0_2x4: Option<P2x4<BlockQ4_0>>,
    pub q4_1_2x4: Option<P2x4<BlockQ4_1>>,
    pub q8_0_2x4: Option<P2x4<BlockQ8_0>>,
    pub q4_1: fn(&[BlockQ4_1], &[BlockQ8_0], &[f32]) -> f32,
    pub q8_0: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
    pub q5_0: fn(&[BlockQ5_0], &[BlockQ8_0]) -> f32,
    pub q4k: fn(&[BlockQ4K], &[BlockQ8K]) -> f32,
    pub q6k: fn(&[BlockQ6K], &[BlockQ8K]) -> f32,
    pub f32: fn(&[u8], &[f32]) -> f32,
    pub f16: fn(&[u8], &[f32]) -> f32,
    pub bf16: fn(&[u8], &[f32]) -> f32,
    pub i8: fn(&[i8], &[i8]) -> i32,
    /// `i8` over many contiguous rows (`out[r] = i8(row r, q)`, bit-identical to calling
    /// `i8` per row); `None`: call `i8` per row.
    pub i8_rows: Option<I8Rows>,
    /// `i8` of several queries times several rows per call (`out[j * nr + r] = i8(row r,
    /// query j)`, bit-identical to `i8`): the multi-query tile kernel.
    pub i8_tile: I8Tile,
    /// Activation quantizers (bit-identical to the scalar ones on every path).
    pub quant_q8_0: QuantQ8_0,
    pub quant_q8k: fn(&[f32], &mut [BlockQ8K]),
    /// Packed-tile kernels (bit-identical to the scalar twins in `packed.rs`, which fill the
    /// scalar table); `None` where this path has none, and then packing does not pay off.
    pub packed_q8: Option<PackedQ8>,
    pub packed_q4k: Option<PackedQ8K>,
    pub packed_q6k: Option<PackedQ8K>,
    /// The `f32` kernels of attention, softmax and the gated activations (`vector.rs`).
    pub vector: &'static VectorKernels,
}

/// Int8 dot products of contiguous rows (`rows`, row length `dim`) with one vector, into `out`.
pub(crate) type I8Rows = fn(&[i8], usize, &[i8], &mut [i32]);

/// Int8 dot products of `queries.len() / dim` queries with `rows.len() / dim` rows (both
/// exact multiples of `dim > 0`) into `out` (exactly `nq * nr` long, query-major).
pub(crate) type I8Tile = fn(&[i8], &[i8], usize, &mut [i32]);

/// Activations to Q8_0 blocks, their `block_q8_1` sums and their integer quant sums.
pub(crate) type QuantQ8_0 = fn(&[f32], &mut [BlockQ8_0], &mut [f32], &mut [i32]);

static SCALAR: Kernels = Kernels {
    q4_0: scalar::vec_dot_q4_0_q8_0,
    q4_0_x4: None,
    q4_1_x4: None,
    q8_0_x4: None,
    q4k_x4: None,
    q4_0_2x4: None,
    q4_1_2x4: None,
    q8_0_2x4: None,
    q4_1: scalar::vec_dot_q4_1_q8_0,
    q8_0: scalar::vec_dot_q8_0_q8_0,
    q5_0: scalar::vec_dot_q5_0_q8_0,
    q4k: scalar::vec_dot_q4k_q8k,
    q6k: scalar::vec_dot_q6k_q8k,
    f32: scalar::vec_dot_f32_bytes,
    f16: scalar::vec_dot_f16_bytes,
    bf16: scalar::vec_dot_bf16_bytes,
    i8: scalar::dot_i8,
    i8_rows: Some(scalar::dot_i8_rows),
    i8_tile: scalar::dot_i8_tile,
    quant_q8_0: scalar::quantize_act_q8_0,
    quant_q8k: scalar::quantize_act_q8k,
    packed_q8: Some(super::packed::scalar_tiles_q8_family),
    packed_q4k: Some(super::packed::scalar_tiles_q4k),
    packed_q6k: Some(super::packed::scalar_tiles_q6k),
    vector: &super::vector::PORTABLE,
};

#[cfg(target_arch = "x86_64")]
macro_rules! x86_table {
    ($m:ident, $q8:path, $q8k:path, $pq8:path, $pq4k:path, $pq6k:path, $vec:path) => {
        Kernels {
            q4_0: super::x86::$m::vec_dot_q4_0_q8_0,
            q4_0_x4: Some(super::x86::$m::vec_dot_q4_0_q8_0_x4),
            q4_1_x4: Some(super::x86::$m::vec_dot_q4_1_q8_0_x4),
            q8_0_x4: Some(super::x86::$m::vec_dot_q8_0_q8_0_x4),
            q4k_x4: Some(super::x86::common::vec_dot_q4k_q8k_x4),
            q4_0_2x4: None,
            q4_1_2x4: None,
            q8_0_2x4: None,
            q4_1: super::x86::$m::vec_dot_q4_1_q8_0,
            q8_0: super::x86::$m::vec_dot_q8_0_q8_0,
            q5_0: super::x86::$m::vec_dot_q5_0_q8_0,
            q4k: super::x86::common::vec_dot_q4k_q8k,
            q6k: super::x86::common::vec_dot_q6k_q8k,
            f32: super::x86::common::vec_dot_f32_bytes,
            f16: super::x86::common::vec_dot_f16_bytes,
            bf16: super::x86::common::vec_dot_bf16_bytes,
            i8: super::x86::common::dot_i8,
            i8_rows: Some(super::x86::common::dot_i8_rows),
            i8_tile: super::x86::common::dot_i8_tile,
            quant_q8_0: $q8,
            quant_q8k: $q8k,
            packed_q8: Some($pq8),
            packed_q4k: Some($pq4k),
            packed_q6k: Some($pq6k),
            vector: &$vec,
        }
    };
}

#[cfg(target_arch = "x86_64")]
static AVX2: Kernels = x86_table!(
    avx2,
    super::x86::quant256::quantize_act_q8_0,
    super::x86::quant256::quantize_act_q8k,
    super::x86::packed256::avx2::tiles_q8_family,
    super::x86::packed256::avx2::tiles_q4k,
    super::x86::packed256::avx2::tiles_q6k,
    super::vector::x86::avx2::TABLE
);
#[cfg(target_arch = "x86_64")]
static AVXVNNI: Kernels = x86_table!(
    avxvnni,
    super::x86::quant256::quantize_act_q8_0,
    super::x86::quant256::quantize_act_q8k,
    super::x86::packed256::avxvnni::tiles_q8_family,
    super::x86::packed256::avxvnni::tiles_q4k,
    super::x86::packed256::avxvnni::tiles_q6k,
    super::vector::x86::avx2::TABLE
);
#[cfg(target_arch = "x86_64")]
static AVX512VNNI: Kernels = x86_table!(
    avx512vnni,
    super::x86::quant512::quantize_act_q8_0,
    super::x86::quant512::quantize_act_q8k,
    super::x86::packed512::tiles_q8_family,
    super::x86::packed512::tiles_q4k,
    super::x86::packed512::tiles_q6k,
    super::vector::x86::avx512::TABLE
);

#[cfg(target_arch = "aarch64")]
macro_rules! neon_table {
    (
        $m:ident, $q4_0:path, $q4_1:path, $q8_0:path, $p4_0:expr, $p4_1:expr, $p8_0:expr,
        $pq8:expr, $pq4k:expr, $pq6k:expr
    ) => {
        Kernels {
            q4_0: $q4_0,
            q4_0_x4: None,
            q4_1_x4: None,
            q8_0_x4: None,
            q4k_x4: None,
            q4_0_2x4: $p4_0,
            q4_1_2x4: $p4_1,
            q8_0_2x4: $p8_0,
            q4_1: $q4_1,
            q8_0: $q8_0,
            q5_0: super::neon::$m::vec_dot_q5_0_q8_0,
            q4k: super::neon::$m::vec_dot_q4k_q8k,
            q6k: super::neon::$m::vec_dot_q6k_q8k,
            f32: super::neon::common::vec_dot_f32_bytes,
            f16: scalar::vec_dot_f16_bytes,
            bf16: super::neon::common::vec_dot_bf16_bytes,
            i8: super::neon::$m::dot_i8,
            i8_rows: None,
            i8_tile: super::neon::$m::dot_i8_tile,
            quant_q8_0: super::neon::quant::quantize_act_q8_0,
            quant_q8k: super::neon::quant::quantize_act_q8k,
            packed_q8: $pq8,
            packed_q4k: $pq4k,
            packed_q6k: $pq6k,
            vector: &super::vector::neon::TABLE,
        }
    };
}

#[cfg(target_arch = "aarch64")]
static NEON: Kernels = neon_table!(
    plain,
    super::neon::plain::vec_dot_q4_0_q8_0,
    super::neon::plain::vec_dot_q4_1_q8_0,
    super::neon::plain::vec_dot_q8_0_q8_0,
    None,
    None,
    None,
    Some(super::neon::packed::plain::tiles_q8_family),
    Some(super::neon::packed::plain::tiles_q4k),
    Some(super::neon::packed::plain::tiles_q6k)
);
#[cfg(target_arch = "aarch64")]
static NEON_DOTPROD: Kernels = neon_table!(
    dotprod,
    super::neon::dotprod::vec_dot_q4_0_q8_0,
    super::neon::dotprod::vec_dot_q4_1_q8_0,
    super::neon::dotprod::vec_dot_q8_0_q8_0,
    None,
    None,
    None,
    Some(super::neon::packed::dotprod::tiles_q8_family),
    Some(super::neon::packed::dotprod::tiles_q4k),
    Some(super::neon::packed::dotprod::tiles_q6k)
);
/// i8mm: the dotprod table with `smmla` two-row kernels (and matching one-row kernels) for
/// the 32-column formats.
#[cfg(target_arch = "aarch64")]
static NEON_I8MM: Kernels = neon_table!(
    dotprod,
    super::neon::i8mm::vec_dot_q4_0_q8_0,
    super::neon::i8mm::vec_dot_q4_1_q8_0,
    super::neon::i8mm::vec_dot_q8_0_q8_0,
    Some(super::neon::i8mm::vec_dot_2x4::<BlockQ4_0>),
    Some(super::neon::i8mm::vec_dot_2x4::<BlockQ4_1>),
    Some(super::neon::i8mm::vec_dot_2x4::<BlockQ8_0>),
    Some(super::neon::packed::dotprod::tiles_q8_family),
    Some(super::neon::packed::dotprod::tiles_q4k),
    Some(super::neon::packed::dotprod::tiles_q6k)
);

/// The kernel table of `p` if this CPU (and this build) supports it.
fn table(p: KernelPath) -> Option<&'static Kernels> {
    use std::sync::OnceLock;
    // Feature detection once per path.
    static DETECTED: OnceLock<[bool; 7]> = OnceLock::new();
    let det = DETECTED.get_or_init(|| KernelPath::ALL.map(detect));
    if !det[p.index() as usize] {
        return None;
    }
    match p {
        KernelPath::Scalar => Some(&SCALAR),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => Some(&AVX2),
        #[cfg(target_arch = "x86_64")]
        KernelPath::AvxVnni => Some(&AVXVNNI),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512Vnni => Some(&AVX512VNNI),
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon => Some(&NEON),
        #[cfg(target_arch = "aarch64")]
        KernelPath::NeonDotprod => Some(&NEON_DOTPROD),
        #[cfg(target_arch = "aarch64")]
        KernelPath::NeonI8mm => Some(&NEON_I8MM),
        _ => None,
    }
}

/// Whether this CPU and build can run path `p`.
fn detect(p: KernelPath) -> bool {
    match p {
        KernelPath::Scalar => true,
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => super::x86::has_avx2(),
        #[cfg(target_arch = "x86_64")]
        KernelPath::AvxVnni => super::x86::has_avxvnni(),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512Vnni => super::x86::has_avx512vnni(),
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon => super::neon::has_neon(),
        #[cfg(target_arch = "aarch64")]
        KernelPath::NeonDotprod => super::neon::has_dotprod(),
        #[cfg(target_arch = "aarch64")]
        KernelPath::NeonI8mm => super::neon::has_i8mm(),
        _ => false,
    }
}

/// The paths this CPU and build support, worst to best.
pub fn available_kernel_paths() -> Vec<KernelPath> {
    KernelPath::ALL
        .into_iter()
        .filter(|p| table(*p).is_some())
        .collect()
}

fn best() -> KernelPath {
    available_kernel_paths()
        .last()
        .copied()
        .unwrap_or(KernelPath::Scalar)
}

const UNSET: u8 = u8::MAX;
static CURRENT: AtomicU8 = AtomicU8::new(UNSET);

/// The kernel path in use: the best this CPU supports, unless [`force_kernel_path`] chose
/// another. (The library reads no environment variable: the `edgeai` CLI, the examples and
/// the benches take `EDGEAI_KERNEL` and call [`force_kernel_path_by_name`].)
pub fn kernel_path() -> KernelPath {
    let i = CURRENT.load(Ordering::Relaxed);
    if i != UNSET {
        return KernelPath::ALL[i as usize];
    }
    let p = best();
    tracing::debug!(path = %p, "edgeai kernel path selected");
    // Racing first users compute the same value; keep whichever was stored first.
    let _ = CURRENT.compare_exchange(UNSET, p.index(), Ordering::Relaxed, Ordering::Relaxed);
    KernelPath::ALL[CURRENT.load(Ordering::Relaxed) as usize]
}

fn available_names() -> String {
    available_kernel_paths()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Makes every later kernel call use `p`; an error naming `p` and the paths this CPU has if
/// this CPU or build lacks it (never an illegal instruction later).
pub fn force_kernel_path(p: KernelPath) -> Result<()> {
    if table(p).is_none() {
        return Err(Error::Kernel(format!(
            "kernel path {p} is not available on this CPU (available: {})",
            available_names()
        )));
    }
    CURRENT.store(p.index(), Ordering::Relaxed);
    tracing::debug!(path = %p, "edgeai kernel path forced");
    Ok(())
}

/// [`force_kernel_path`] by name, as the CLI's `EDGEAI_KERNEL` takes it (`scalar`, `avx2`,
/// `avxvnni`, `avx512vnni`, `neon`, `dotprod`, `i8mm`): an error for an unknown name or a
/// path this CPU lacks, listing the available ones.
///
/// ```
/// use edgeai_core::quant::{force_kernel_path_by_name, KernelPath};
/// assert!(force_kernel_path_by_name("no-such-path").is_err());
/// assert_eq!(force_kernel_path_by_name("scalar").unwrap(), KernelPath::Scalar);
/// ```
pub fn force_kernel_path_by_name(name: &str) -> Result<KernelPath> {
    let p = KernelPath::from_name(name).ok_or_else(|| {
        Error::Kernel(format!(
            "unknown kernel path `{name}` (available on this CPU: {})",
            available_names()
        ))
    })?;
    force_kernel_path(p)?;
    Ok(p)
}

/// Whether path `p` is available and has packed-tile SIMD kernels of its own.
pub(crate) fn has_packed(p: KernelPath) -> bool {
    p != KernelPath::Scalar && table(p).is_some_and(|k| k.packed_q8.is_some())
}

/// The kernels of the current path.
pub(crate) fn current() -> &'static Kernels {
    table(kernel_path()).unwrap_or(&SCALAR)
}

/// The kernels of path `p`, or an error if unavailable.
pub(crate) fn kernels(p: KernelPath) -> Result<&'static Kernels> {
    table(p).ok_or_else(|| Error::Kernel(format!("kernel path {p} is not available here")))
}
