//! # edgeai-testutil
//!
//! What edgeai's tests repeated before this crate existed, once: fetched models and photos
//! (skipping, with the reason printed, when `scripts/fetch-models` has not run), the list of
//! compiled-in backends, tensor comparison, seeded inputs, a counting global allocator and a
//! harness that re-runs the test binary as a child process. Not published; a dev-dependency
//! of the workspace's test targets only.
#![warn(missing_docs)]

pub mod alloc;

use std::path::PathBuf;
use std::process::Command;

use edgeai_core::{Backend, Result, Tensor};
use edgeai_vision::{Image, ImageLimits};

/// The models folder: `$EDGEAI_MODELS` if set, else the workspace's `models/`
/// ([`edgeai_core::paths::models_dir`]; tests may read the environment, the library does not).
pub fn models_dir() -> Option<PathBuf> {
    edgeai_core::paths::models_dir(std::env::var_os(edgeai_core::paths::MODELS_ENV))
}

/// Threads per backend for the graph benches: `$EDGEAI_BENCH_THREADS` if it is a positive
/// number, else 2.
pub fn bench_threads() -> usize {
    std::env::var("EDGEAI_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// The fetched file `models/<relative>` (under [`models_dir`]), if it is there.
pub fn model_path(relative: impl AsRef<std::path::Path>) -> Option<PathBuf> {
    edgeai_core::paths::model_path(std::env::var_os(edgeai_core::paths::MODELS_ENV), relative)
}

/// The fetched file `models/<rel>`, or `None` after printing that the test skips because it
/// is not fetched.
pub fn model_or_skip(rel: &str) -> Option<PathBuf> {
    let p = model_path(rel);
    if p.is_none() {
        eprintln!("skipping: {rel} not fetched (run scripts/fetch-models)");
    }
    p
}

/// `let p = need!("face/sface.onnx");`: the fetched model's path, or return from the test
/// (printing why) when it is not fetched.
#[macro_export]
macro_rules! need {
    ($rel:expr) => {
        match $crate::model_or_skip($rel) {
            Some(p) => p,
            None => return,
        }
    };
}

/// A fetched photo (`models/photos/<name>`), decoded; `None` when not fetched.
pub fn photo(name: &str) -> Option<Image> {
    let p = model_path(format!("photos/{name}"))?;
    Some(Image::open(&p, &ImageLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// Every backend `names` lists, through `get` (pass `edgeai::available_backends()` and
/// `edgeai::backend`). Panics when the list is empty: a test over no backend proves nothing.
pub fn backends(
    names: Vec<&'static str>,
    get: impl Fn(&str) -> Result<Box<dyn Backend>>,
) -> Vec<Box<dyn Backend>> {
    assert!(!names.is_empty(), "no backend compiled in");
    names
        .into_iter()
        .map(|n| get(n).unwrap_or_else(|e| panic!("backend {n}: {e}")))
        .collect()
}

/// The largest absolute difference between two f32 tensors of the same shape (NaN against
/// anything counts as infinitely far).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = (x - y).abs();
            if d.is_nan() && !(x.is_nan() && y.is_nan()) {
                f32::INFINITY
            } else if d.is_nan() {
                0.0
            } else {
                d
            }
        })
        .fold(0.0, f32::max)
}

/// xorshift64*: deterministic test inputs, the same on every run and platform.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A uniform value in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (v >> 40) as f32 / (1u64 << 24) as f32
    }

    /// `n` uniform values in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| lo + (hi - lo) * self.next_f32()).collect()
    }

    /// An f32 tensor of uniform values in `[lo, hi)`.
    pub fn tensor(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
        let v = self.vec(shape.iter().product(), lo, hi);
        Tensor::from_vec(shape.to_vec(), v).unwrap()
    }
}

/// The environment variable a child started by [`child_test`] finds its argument in.
pub const CHILD_ENV: &str = "EDGEAI_TEST_CHILD";

/// Whether this process is a child started by [`child_test`] (its argument, if so). A
/// parent test returns early in a child; the child's test runs only there.
pub fn child_arg() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// A command that re-runs this test binary for exactly the test `name`, single-threaded with
/// output shown, with `arg` in [`CHILD_ENV`]; the caller sets up pipes and spawns it.
pub fn child_test(name: &str, arg: impl AsRef<std::ffi::OsStr>) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut c = Command::new(exe);
    c.args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, arg);
    c
}

/// The ten fixed SmolLM2 cross-check prompts (plain text, code, and ChatML turns) that the
/// LLM tests compare engines on: the candle cross-check, the ONNX export and the ONNX engines.
pub fn smollm2_cross_check_prompts() -> Vec<String> {
    let chat = |q: &str| format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    vec![
        "The capital of France is".into(),
        chat("Write a haiku about the sea."),
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n".into(),
        "Once upon a time, in a small village by the sea,".into(),
        chat("What is the boiling point of water in Celsius?"),
        "The three primary colors are".into(),
        "import numpy as np\n\n# Compute the mean of a list\n".into(),
        chat("Explain photosynthesis in one sentence."),
        "Water is made of hydrogen and".into(),
        "Dear Sir or Madam,\n\nI am writing to".into(),
    ]
}
