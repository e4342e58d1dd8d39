//! `edgeai run`: one run of a graph model on .npy or random inputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgeai::bench::random_inputs;
use edgeai::core::{npy, Backend, LoadOptions, Model, ModelFormat, ModelSource, Tensor};

use crate::fail::{Context, Failure, Result};
use crate::progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (ONNX; TFLite/NNEF where the backend reads them).
    pub model: PathBuf,
    /// The backend to run on (default: the first compiled in).
    #[arg(long, short)]
    pub backend: Option<String>,
    /// An input: `NAME=FILE.npy`, or `NAME=random` for seeded random data. Repeat for each
    /// input of the model.
    #[arg(long = "input", short, value_name = "NAME=FILE|random", value_parser = parse_input_arg)]
    pub inputs: Vec<InputArg>,
    /// Write each output to `<DIR>/<output-name>.npy`.
    #[arg(long, short, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Threads the backend may use.
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// Seed of random inputs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Size given to symbolic dimensions of random inputs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub dim: usize,
}

/// One `--input` argument.
#[derive(Debug, Clone)]
pub struct InputArg {
    pub name: String,
    pub source: InputSource,
}

#[derive(Debug, Clone)]
pub enum InputSource {
    File(PathBuf),
    Random,
}

pub fn parse_input_arg(s: &str) -> std::result::Result<InputArg, String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=FILE.npy or NAME=random"))?;
    if name.is_empty() || value.is_empty() {
        return Err(format!("`{s}` is not NAME=FILE.npy or NAME=random"));
    }
    Ok(InputArg {
        name: name.to_string(),
        source: if value == "random" {
            InputSource::Random
        } else {
            InputSource::File(value.into())
        },
    })
}

/// The models folder the CLI uses: `$EDGEAI_MODELS`, else the `models/` folder found from the
/// current directory.
pub fn models_dir() -> Option<std::path::PathBuf> {
    edgeai::core::paths::models_dir(std::env::var_os(edgeai::core::paths::MODELS_ENV))
}

/// What the backends get from the environment: `$EDGEAI_MODELS` and `$ORT_DYLIB_PATH`
/// (the library reads neither; the CLI passes them on).
pub fn backend_config() -> edgeai::BackendConfig {
    let mut c = edgeai::BackendConfig::default();
    if let Some(d) = std::env::var_os(edgeai::core::paths::MODELS_ENV) {
        c = c.with_models_dir(d);
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        c = c.with_ort_library(p);
    }
    c
}

/// The backend called `name` (default: the first compiled in); an unknown name is a usage
/// error that lists the compiled-in backends.
pub fn backend(name: Option<&str>) -> Result<Box<dyn Backend>> {
    let config = backend_config();
    match name {
        None => Ok(edgeai::default_backend_with(&config)?),
        Some(n) if edgeai::available_backends().contains(&n) => {
            Ok(edgeai::backend_with(n, &config)?)
        }
        Some(n) => Err(Failure::usage(format!(
            "unknown backend `{n}` (compiled in: {}; `ort` needs the Cargo feature of that name)",
            edgeai::available_backends().join(", ")
        ))),
    }
}

/// Fails with a runtime error naming the file when the model file cannot be read, and with
/// a usage error for GGUF files (which `run`/`bench` cannot use).
pub fn check_graph_model(path: &Path, command: &str) -> Result<()> {
    std::fs::metadata(path)
        .map_err(|e| edgeai::core::Error::io(path, e))
        .and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(edgeai::core::Error::io(
                    path,
                    std::io::Error::other("not a file"),
                ))
            }
        })?;
    if ModelSource::from(path).format() == ModelFormat::Gguf {
        return Err(Failure::usage(format!(
            "{}: `edgeai {command}` takes graph models (ONNX); use `edgeai chat` or \
             `edgeai inspect` for GGUF LLMs",
            path.display()
        )));
    }
    Ok(())
}

/// Loads a model under a spinner.
pub fn load(
    backend: &dyn Backend,
    path: &Path,
    threads: Option<usize>,
) -> Result<(Box<dyn Model>, f64)> {
    let mut opts = LoadOptions::new();
    if let Some(t) = threads {
        opts = opts.with_threads(t);
    }
    let t0 = Instant::now();
    let model = progress::with_spinner(
        format!("loading {} on {}", path.display(), backend.name()),
        || backend.load(path.into(), &opts),
    )?;
    Ok((model, t0.elapsed().as_secs_f64() * 1e3))
}

/// Builds the model's inputs, by position, from `--input` arguments: every model input must
/// be given exactly once, every name must exist, and every file must match the model's dtype
/// and shape (errors name the input and the file).
pub fn make_inputs(
    model: &dyn Model,
    args: &[InputArg],
    seed: u64,
    dim: usize,
) -> Result<Vec<Tensor>> {
    let specs = model.inputs();
    let known = || {
        specs
            .iter()
            .map(|s| format!("{} ({} {})", s.name, s.dtype, s.shape_string()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut slots: Vec<Option<Tensor>> = vec![None; specs.len()];
    for (k, a) in args.iter().enumerate() {
        let i = specs.iter().position(|s| s.name == a.name).ok_or_else(|| {
            Failure::usage(format!(
                "--input {}: the model has no input named `{}` (inputs: {})",
                a.name,
                a.name,
                known()
            ))
        })?;
        if slots[i].is_some() {
            return Err(Failure::usage(format!("--input {}: given twice", a.name)));
        }
        let spec = &specs[i];
        let t = match &a.source {
            InputSource::Random => {
                let mut t =
                    random_inputs(std::slice::from_ref(spec), seed.wrapping_add(k as u64), dim)?;
                t.remove(0)
            }
            InputSource::File(p) => {
                let t = npy::read(p)?;
                spec.check(&t).context(|| format!("{}", p.display()))?;
                t
            }
        };
        slots[i] = Some(t);
    }
    slots
        .into_iter()
        .zip(specs)
        .map(|(t, s)| {
            t.ok_or_else(|| {
                Failure::usage(format!(
                    "no --input for `{}` ({} {}): give `--input {}=FILE.npy` or `--input {}=random`",
                    s.name,
                    s.dtype,
                    s.shape_string(),
                    s.name,
                    s.name
                ))
            })
        })
        .collect()
}

/// A file name for an output: its name with characters other than letters, digits, `.`,
/// `_` and `-` replaced by `_`.
pub fn output_file_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_start_matches('.');
    format!("{}.npy", if s.is_empty() { "output" } else { s })
}

/// `min / mean / max` of a tensor's values, as text.
pub fn stats(t: &Tensor) -> String {
    fn fmt(v: impl Iterator<Item = f64>) -> String {
        let (mut lo, mut hi, mut sum, mut n) = (f64::INFINITY, f64::NEG_INFINITY, 0.0, 0usize);
        for x in v {
            lo = lo.min(x);
            hi = hi.max(x);
            sum += x;
            n += 1;
        }
        if n == 0 {
            return "empty".into();
        }
        format!("min {lo:.4} mean {:.4} max {hi:.4}", sum / n as f64)
    }
    fmt(t.data().to_f64_vec().into_iter())
}

pub fn main(a: Args) -> Result<()> {
    check_graph_model(&a.model, "run")?;
    let backend = backend(a.backend.as_deref())?;
    let (model, load_ms) = load(backend.as_ref(), &a.model, a.threads)?;
    let inputs = make_inputs(model.as_ref(), &a.inputs, a.seed, a.dim)?;
    for (s, t) in model.inputs().iter().zip(&inputs) {
        println!("input  {}: {} {:?}", s.name, t.dtype(), t.shape());
    }
    let t0 = Instant::now();
    let outputs = model.run(inputs)?;
    let run_ms = t0.elapsed().as_secs_f64() * 1e3;
    if let Some(dir) = &a.output_dir {
        std::fs::create_dir_all(dir).map_err(|e| edgeai::core::Error::io(dir, e))?;
    }
    for (s, t) in model.outputs().iter().zip(&outputs) {
        let mut line = format!(
            "output {}: {} {:?} ({})",
            s.name,
            t.dtype(),
            t.shape(),
            stats(t)
        );
        if let Some(dir) = &a.output_dir {
            let p = dir.join(output_file_name(&s.name));
            npy::write(&p, t)?;
            line.push_str(&format!(" -> {}", p.display()));
        }
        println!("{line}");
    }
    println!(
        "backend {} | load {load_ms:.1} ms | run {run_ms:.2} ms",
        backend.name()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_args_and_file_names() {
        let a = parse_input_arg("data=x.npy").unwrap();
        assert_eq!(a.name, "data");
        assert!(matches!(a.source, InputSource::File(ref p) if p == Path::new("x.npy")));
        assert!(matches!(
            parse_input_arg("x=random").unwrap().source,
            InputSource::Random
        ));
        assert!(parse_input_arg("x").is_err());
        assert!(parse_input_arg("=a.npy").is_err());
        assert_eq!(output_file_name("fc1/out:0"), "fc1_out_0.npy");
        assert_eq!(output_file_name("../x"), "_x.npy");
        assert_eq!(output_file_name(""), "output.npy");
    }
}
