//! Measuring a graph backend on one model: load time, first-run and steady-state latency,
//! peak resident memory.
//!
//! The `edgeai bench` command and `examples/compare_backends.rs` both use this module, so
//! their figures are measured the same way.
//!
//! ```no_run
//! use edgeai::bench::{measure, random_inputs, BenchConfig, InputMaker};
//!
//! let backend = edgeai::default_backend()?;
//! let cfg = BenchConfig::new().with_runs(20).with_threads(2);
//! let report = measure(
//!     backend.as_ref(),
//!     "models/face/sface.onnx".into(),
//!     InputMaker::Random { seed: 42, symbolic_default: 1 },
//!     &cfg,
//! )?;
//! println!("{}: load {:.1} ms, median {:.2} ms", report.backend, report.load_ms, report.median_ms);
//! # Ok::<(), edgeai::core::Error>(())
//! ```
//!
//! # How the figures are taken
//!
//! - `load_ms`: wall time of [`Backend::load`] (parsing, optimisation, weight packing).
//! - `first_run_ms`: wall time of the first [`Model::run`] after loading (includes any lazy
//!   initialisation the backend defers to the first run).
//! - `warmup` further runs are made and discarded, then `runs` runs are timed one by one;
//!   `median_ms` and `p90_ms` are taken over those (nearest-rank percentiles).
//! - `peak_rss_bytes`: on Linux, the process's peak resident set size (`VmHWM` in
//!   `/proc/self/status`) after the timed runs. Before loading, the peak is reset by writing
//!   `5` to `/proc/self/clear_refs`, so the figure covers this load and these runs rather
//!   than whatever the process did earlier; where the reset is refused (old kernels,
//!   sandboxes) the figure is the process's lifetime peak and
//!   [`BenchReport::peak_rss_reset`] is `false`. `None` on other systems. It is the whole
//!   process's figure: other threads' allocations count too.

use std::time::Instant;

use edgeai_core::{
    Backend, DType, Dim, Error, LoadOptions, Model, ModelSource, Result, Tensor, TensorSpec,
};

/// How many runs to make and with how many threads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BenchConfig {
    /// Timed runs (at least 1).
    pub runs: usize,
    /// Untimed runs after the first run and before the timed ones.
    pub warmup: usize,
    /// Threads passed to [`LoadOptions::with_threads`]; `None` lets the backend decide.
    pub threads: Option<usize>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            runs: 10,
            warmup: 1,
            threads: None,
        }
    }
}

impl BenchConfig {
    /// 10 timed runs, 1 warm-up run, backend-chosen threads.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of timed runs (at least 1).
    pub fn with_runs(mut self, runs: usize) -> Self {
        self.runs = runs.max(1);
        self
    }

    /// Sets the number of untimed warm-up runs.
    pub fn with_warmup(mut self, warmup: usize) -> Self {
        self.warmup = warmup;
        self
    }

    /// Sets the thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }
}

/// Where the inputs of the measured runs come from.
#[derive(Debug, Clone)]
pub enum InputMaker {
    /// These tensors, by position (cloned for every run).
    Given(Vec<Tensor>),
    /// Seeded random tensors built from the loaded model's input specs with
    /// [`random_inputs`]; every symbolic dimension takes `symbolic_default`.
    Random {
        /// The RNG seed.
        seed: u64,
        /// The size given to symbolic dimensions (and to every dimension of an input whose
        /// rank is unknown, which is then taken as rank 1).
        symbolic_default: usize,
    },
}

/// The measurements of one backend on one model.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// The backend's name.
    pub backend: String,
    /// Wall time of loading the model, in milliseconds.
    pub load_ms: f64,
    /// Wall time of the first run, in milliseconds.
    pub first_run_ms: f64,
    /// Median of the timed runs, in milliseconds.
    pub median_ms: f64,
    /// 90th percentile (nearest rank) of the timed runs, in milliseconds.
    pub p90_ms: f64,
    /// Fastest timed run, in milliseconds.
    pub min_ms: f64,
    /// Every timed run, in milliseconds, in the order they ran.
    pub run_ms: Vec<f64>,
    /// Peak resident set size of the process, in bytes (Linux only); see the module docs.
    pub peak_rss_bytes: Option<u64>,
    /// Whether the peak was reset before loading (so `peak_rss_bytes` covers this
    /// measurement only).
    pub peak_rss_reset: bool,
    /// The inputs the runs were given.
    pub inputs: Vec<Tensor>,
    /// The outputs of the last run.
    pub outputs: Vec<Tensor>,
}

/// Loads `source` on `backend` and measures it as described in the module docs.
///
/// Errors: whatever loading or running returns (a bad file, a wrong input names the input).
pub fn measure(
    backend: &dyn Backend,
    source: ModelSource,
    inputs: InputMaker,
    cfg: &BenchConfig,
) -> Result<BenchReport> {
    let mut options = LoadOptions::new();
    if let Some(t) = cfg.threads {
        options = options.with_threads(t);
    }
    let peak_rss_reset = reset_peak_rss();
    let t0 = Instant::now();
    let model = backend.load(source, &options)?;
    let load_ms = ms(t0);
    tracing::debug!(backend = backend.name(), load_ms, "model loaded");
    let inputs = match inputs {
        InputMaker::Given(v) => v,
        InputMaker::Random {
            seed,
            symbolic_default,
        } => random_inputs(model.inputs(), seed, symbolic_default)?,
    };
    let (first_run_ms, run_ms, outputs) = time_runs(model.as_ref(), &inputs, cfg)?;
    let peak_rss_bytes = peak_rss_bytes();
    let mut sorted = run_ms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(BenchReport {
        backend: backend.name().to_string(),
        load_ms,
        first_run_ms,
        median_ms: percentile(&sorted, 50.0),
        p90_ms: percentile(&sorted, 90.0),
        min_ms: sorted.first().copied().unwrap_or(0.0),
        run_ms,
        peak_rss_bytes,
        peak_rss_reset,
        inputs,
        outputs,
    })
}

fn time_runs(
    model: &dyn Model,
    inputs: &[Tensor],
    cfg: &BenchConfig,
) -> Result<(f64, Vec<f64>, Vec<Tensor>)> {
    let t = Instant::now();
    let mut outputs = model.run(inputs.to_vec())?;
    let first = ms(t);
    for _ in 0..cfg.warmup {
        outputs = model.run(inputs.to_vec())?;
    }
    let mut times = Vec::with_capacity(cfg.runs.max(1));
    for _ in 0..cfg.runs.max(1) {
        let batch = inputs.to_vec();
        let t = Instant::now();
        outputs = model.run(batch)?;
        times.push(ms(t));
    }
    Ok((first, times, outputs))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The nearest-rank percentile `p` (0..=100) of an ascending slice; 0 for an empty one.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seeded random tensors matching `specs`: floats uniform in [-1, 1), integers in [0, 10)
/// (small enough to be valid indices or token ids for most models), u8 / i8 over their full
/// range. Symbolic dimensions take `symbolic_default`; an input of unknown rank becomes a
/// 1-D tensor of `symbolic_default` elements. The same seed gives the same tensors.
///
/// Errors when the shape's element count overflows.
pub fn random_inputs(
    specs: &[TensorSpec],
    seed: u64,
    symbolic_default: usize,
) -> Result<Vec<Tensor>> {
    let mut rng = SplitMix64(seed);
    specs
        .iter()
        .map(|s| random_tensor(s, &mut rng, symbolic_default))
        .collect()
}

/// The concrete shape `random_inputs` gives an input: symbolic dimensions take
/// `symbolic_default`; an unknown rank becomes `[symbolic_default]`.
pub fn concrete_shape(spec: &TensorSpec, symbolic_default: usize) -> Vec<usize> {
    match &spec.shape {
        None => vec![symbolic_default],
        Some(dims) => dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Symbolic(_) => symbolic_default,
            })
            .collect(),
    }
}

fn random_tensor(spec: &TensorSpec, rng: &mut SplitMix64, sym: usize) -> Result<Tensor> {
    let shape = concrete_shape(spec, sym);
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::Tensor(format!(
                "input `{}`: shape {shape:?} has too many elements",
                spec.name
            ))
        })?;
    let unit = |r: &mut SplitMix64| (r.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
    let small = |r: &mut SplitMix64| (r.next() % 10) as i64;
    match spec.dtype {
        DType::F32 => Tensor::from_vec(shape, (0..n).map(|_| unit(rng)).collect::<Vec<f32>>()),
        DType::F16 => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| edgeai_core::half::f16::from_f32(unit(rng)))
                .collect::<Vec<_>>(),
        ),
        DType::BF16 => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| edgeai_core::half::bf16::from_f32(unit(rng)))
                .collect::<Vec<_>>(),
        ),
        DType::I8 => Tensor::from_vec(shape, (0..n).map(|_| rng.next() as i8).collect::<Vec<_>>()),
        DType::U8 => Tensor::from_vec(shape, (0..n).map(|_| rng.next() as u8).collect::<Vec<_>>()),
        DType::I32 => {
            Tensor::from_vec(shape, (0..n).map(|_| small(rng) as i32).collect::<Vec<_>>())
        }
        DType::I64 => Tensor::from_vec(shape, (0..n).map(|_| small(rng)).collect::<Vec<_>>()),
        DType::Bool => Tensor::from_vec(
            shape,
            (0..n).map(|_| rng.next() & 1 == 1).collect::<Vec<_>>(),
        ),
        DType::F64 => Tensor::from_vec(
            shape,
            (0..n).map(|_| f64::from(unit(rng))).collect::<Vec<_>>(),
        ),
        DType::I16 => {
            Tensor::from_vec(shape, (0..n).map(|_| small(rng) as i16).collect::<Vec<_>>())
        }
        DType::U16 => {
            Tensor::from_vec(shape, (0..n).map(|_| small(rng) as u16).collect::<Vec<_>>())
        }
        DType::U32 => {
            Tensor::from_vec(shape, (0..n).map(|_| small(rng) as u32).collect::<Vec<_>>())
        }
        DType::U64 => {
            Tensor::from_vec(shape, (0..n).map(|_| small(rng) as u64).collect::<Vec<_>>())
        }
    }
}

/// SplitMix64: a tiny, well-mixed, seedable generator (enough for test inputs).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Resets the process's peak RSS counter (Linux: writes `5` to `/proc/self/clear_refs`).
/// Returns whether the reset took effect; always `false` off Linux.
pub fn reset_peak_rss() -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::write("/proc/self/clear_refs", "5") {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("cannot reset peak RSS: {e}");
                false
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The process's peak resident set size in bytes (Linux: `VmHWM` from `/proc/self/status`);
/// `None` elsewhere or when it cannot be read.
pub fn peak_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_vm_hwm(&status)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Parses the `VmHWM:   1234 kB` line of a `/proc/<pid>/status` text into bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => n.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeai_core::ModelFormat;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 5.0);
        assert_eq!(percentile(&v, 90.0), 9.0);
        assert_eq!(percentile(&v, 100.0), 10.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[3.0], 90.0), 3.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    fn spec(name: &str, dtype: DType, shape: Option<Vec<Dim>>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }

    #[test]
    fn random_inputs_are_seeded_and_shaped() {
        let specs = vec![
            spec(
                "x",
                DType::F32,
                Some(vec![Dim::Symbolic("batch".into()), Dim::Fixed(3)]),
            ),
            spec("ids", DType::I64, Some(vec![Dim::Fixed(4)])),
            spec("u", DType::U8, None),
        ];
        let a = random_inputs(&specs, 7, 2).unwrap();
        let b = random_inputs(&specs, 7, 2).unwrap();
        let c = random_inputs(&specs, 8, 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a[0], c[0]);
        assert_eq!(a[0].shape(), &[2, 3]);
        assert_eq!(a[1].shape(), &[4]);
        assert_eq!(a[2].shape(), &[2]);
        assert!(a[0]
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .all(|v| (-1.0..1.0).contains(v)));
        assert!(a[1]
            .as_slice::<i64>()
            .unwrap()
            .iter()
            .all(|v| (0..10).contains(v)));
        for (s, t) in specs.iter().zip(&a) {
            s.check(t).unwrap();
        }
    }

    #[test]
    fn random_inputs_reject_overflowing_shapes() {
        let s = spec(
            "big",
            DType::F32,
            Some(vec![Dim::Fixed(usize::MAX), Dim::Fixed(2)]),
        );
        let e = random_inputs(&[s], 0, 1).unwrap_err();
        assert!(e.to_string().contains("`big`"), "{e}");
    }

    #[test]
    fn vm_hwm_is_parsed() {
        let s = "Name:\tx\nVmPeak:\t  99 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(s), Some(1234 * 1024));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM: x kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_is_read_on_linux() {
        let p = peak_rss_bytes().expect("VmHWM on Linux");
        assert!(p > 1024 * 1024, "peak RSS {p} bytes is implausibly small");
    }

    /// A model that doubles its one f32 input.
    struct Double(Vec<TensorSpec>);
    impl Model for Double {
        fn backend(&self) -> &str {
            "double"
        }
        fn inputs(&self) -> &[TensorSpec] {
            &self.0
        }
        fn outputs(&self) -> &[TensorSpec] {
            &self.0
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
            edgeai_core::validate_inputs(&self.0, &inputs)?;
            let t = &inputs[0];
            let v: Vec<f32> = t.as_slice::<f32>()?.iter().map(|x| x * 2.0).collect();
            Ok(vec![Tensor::from_vec(t.shape().to_vec(), v)?])
        }
    }
    struct DoubleBackend;
    impl Backend for DoubleBackend {
        fn name(&self) -> &'static str {
            "double"
        }
        fn formats(&self) -> &'static [ModelFormat] {
            &[ModelFormat::Onnx]
        }
        fn load(&self, _: ModelSource, _: &LoadOptions) -> Result<Box<dyn Model>> {
            Ok(Box::new(Double(vec![spec(
                "x",
                DType::F32,
                Some(vec![Dim::Symbolic("n".into())]),
            )])))
        }
    }

    #[test]
    fn measure_times_the_runs_and_keeps_the_outputs() {
        let cfg = BenchConfig::new()
            .with_runs(5)
            .with_warmup(2)
            .with_threads(1);
        let r = measure(
            &DoubleBackend,
            ModelSource::Bytes(vec![]),
            InputMaker::Random {
                seed: 1,
                symbolic_default: 3,
            },
            &cfg,
        )
        .unwrap();
        assert_eq!(r.backend, "double");
        assert_eq!(r.run_ms.len(), 5);
        assert!(r.min_ms <= r.median_ms && r.median_ms <= r.p90_ms);
        assert!(r.load_ms >= 0.0 && r.first_run_ms >= 0.0);
        let x = r.inputs[0].as_slice::<f32>().unwrap();
        let y = r.outputs[0].as_slice::<f32>().unwrap();
        assert_eq!(y.len(), 3);
        assert!(x.iter().zip(y).all(|(a, b)| *b == a * 2.0));

        let given = Tensor::from_vec(vec![2], vec![1.0f32, 2.0]).unwrap();
        let r = measure(
            &DoubleBackend,
            ModelSource::Bytes(vec![]),
            InputMaker::Given(vec![given]),
            &cfg,
        )
        .unwrap();
        assert_eq!(r.outputs[0].as_slice::<f32>().unwrap(), &[2.0, 4.0]);
        let bad = Tensor::from_vec(vec![2], vec![1i64, 2]).unwrap();
        let e = measure(
            &DoubleBackend,
            ModelSource::Bytes(vec![]),
            InputMaker::Given(vec![bad]),
            &cfg,
        )
        .unwrap_err();
        assert!(e.to_string().contains("input `x`"), "{e}");
    }
}
