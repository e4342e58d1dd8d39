//! ONNX's own backend node tests (`models/onnx-node-tests/*/`, fetched by
//! `scripts/fetch-models`) through every compiled-in backend, via edgeai's public
//! `Backend` / `Model` API: load `model.onnx`, run `test_data_set_*/input_*.pb` by input name,
//! compare with `output_*.pb`.
//!
//! ```text
//! cargo run --release --example onnx_conformance --features full
//! cargo run --example onnx_conformance -- --backend tract --op Conv --op Relu
//! ```
//!
//! Comparison: shapes and dtypes exact; f32 / f16 / bf16 within `|a - e| <= 1e-5 + 1e-3 |e|`,
//! NaN equal to NaN, infinities equal to the same infinity; every other dtype exact. Each test is
//! `pass`, `fail` (a mismatch), `error` (load or run refused, or a panic, or over the time
//! limit: the first line of the error) or `refused` (an input or output whose type edgeai's
//! `Tensor` cannot hold: a dtype without a `DType`, or a sequence / optional / map value).
//!
//! Writes `<out>/conformance.md` (totals per backend, then pass/total per backend per ONNX
//! operator, then every failure and error) and `<out>/results-<backend>.tsv` (one line per
//! test) under `--out` (default `target/conformance`); `scripts/conformance-ort-python`
//! writes the same for ONNX Runtime's own Python API. A full run (no `--op` / `--test`
//! filter) checks each backend's pass count against `tests/conformance-baseline.txt` and exits
//! 1 when one dropped; where one rose it says so, so the baseline can be raised
//! (`--write-baseline` rewrites the file with this run's counts).
//!
//! Flags: `--backend NAME` (repeatable; default every compiled-in backend), `--op OP`
//! (repeatable, exact operator name, case-insensitive), `--test SUBSTRING`, `--timeout SECS`
//! (per test, default 20), `--dir DIR`, `--out DIR`, `--baseline FILE`, `--write-baseline`,
//! `--docs FILE` (also copy the report there). Environment: `EDGEAI_MODELS`, `ORT_DYLIB_PATH`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edgeai::core::half::{bf16, f16};
use edgeai::core::{LoadOptions, Tensor, TensorData};
use edgeai::onnx::proto::{GraphProto, ValueInfoProto};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;
const DEFAULT_BASELINE: &str = "tests/conformance-baseline.txt";
const STATUSES: [Status; 4] = [Status::Pass, Status::Fail, Status::Error, Status::Refused];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Pass,
    Fail,
    Error,
    Refused,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::Refused => "refused",
        }
    }
}

/// One test directory, read once and shared by every backend.
struct Case {
    name: String,
    dir: PathBuf,
    /// The single node's operator (`domain.Op` outside the default domain); an `_expanded`
    /// test (the operator's function body) is `Op (expanded)`.
    op: String,
    /// Why edgeai cannot hold this test's values, if it cannot.
    refused: Option<String>,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

struct Outcome {
    status: Status,
    detail: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("onnx_conformance: {e}");
            ExitCode::from(2)
        }
    }
}

struct Args {
    backends: Vec<String>,
    ops: Vec<String>,
    test: Option<String>,
    timeout: Duration,
    dir: Option<PathBuf>,
    out: PathBuf,
    baseline: PathBuf,
    write_baseline: bool,
    docs: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backends: Vec::new(),
        ops: Vec::new(),
        test: None,
        timeout: Duration::from_secs(20),
        dir: None,
        out: PathBuf::from("target/conformance"),
        baseline: PathBuf::from(DEFAULT_BASELINE),
        write_baseline: false,
        docs: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => a.backends.push(value()?),
            "--op" => a.ops.push(value()?.to_ascii_lowercase()),
            "--test" => a.test = Some(value()?),
            "--timeout" => {
                let v = value()?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--timeout {v}: not a number"))?;
                a.timeout = Duration::from_secs_f64(s);
            }
            "--dir" => a.dir = Some(value()?.into()),
            "--out" => a.out = value()?.into(),
            "--baseline" => a.baseline = value()?.into(),
            "--write-baseline" => a.write_baseline = true,
            "--docs" => a.docs = Some(value()?.into()),
            "-h" | "--help" => {
                return Err("usage: onnx_conformance [--backend NAME]... [--op OP]... \
                     [--test SUBSTRING] [--timeout SECS] [--dir DIR] [--out DIR] \
                     [--baseline FILE] [--write-baseline] [--docs FILE]"
                    .into())
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(a)
}

fn run() -> Result<ExitCode, String> {
    let args = parse_args()?;
    let models = std::env::var_os(edgeai::core::paths::MODELS_ENV);
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => match edgeai::core::paths::model_path(models.clone(), "onnx-node-tests") {
            Some(d) => d,
            None => {
                eprintln!(
                    "onnx_conformance: skipping: models/onnx-node-tests not fetched \
                     (run scripts/fetch-models)"
                );
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    let mut config = edgeai::BackendConfig::default();
    if let Some(m) = models {
        config = config.with_models_dir(m);
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        config = config.with_ort_library(p);
    }
    let names: Vec<String> = if args.backends.is_empty() {
        edgeai::available_backends()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        args.backends.clone()
    };
    if names.is_empty() {
        return Err("no backend compiled in (build with --features tract, ort, ...)".into());
    }

    let cases = read_cases(&dir)?;
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|c| args.ops.is_empty() || args.ops.contains(&c.op.to_ascii_lowercase()))
        .filter(|c| {
            args.test
                .as_ref()
                .is_none_or(|t| c.name.contains(t.as_str()))
        })
        .collect();
    let filtered = !args.ops.is_empty() || args.test.is_some();
    println!(
        "onnx_conformance: {} test(s) from {} on {}",
        cases.len(),
        dir.display(),
        names.join(", ")
    );

    // A backend's panic is caught and reported as that test's error; keep the default
    // hook's message for panics on the main thread only.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Backends run tests on their own worker threads too (rayon, candle-onnx's).
        if std::thread::current().name() == Some("main") {
            default_hook(info);
        }
    }));

    let mut reports: Vec<(String, Vec<Outcome>, Duration)> = Vec::new();
    for name in &names {
        let backend = edgeai::backend_with(name, &config).map_err(|e| e.to_string())?;
        let backend: std::sync::Arc<dyn edgeai::core::Backend> = backend.into();
        let start = Instant::now();
        let mut outcomes = Vec::with_capacity(cases.len());
        for case in &cases {
            let o = run_case(&backend, case, args.timeout);
            if o.status == Status::Error && o.detail.starts_with("timed out") {
                eprintln!("{name}: {}: {}", case.name, o.detail);
            }
            outcomes.push(o);
        }
        let took = start.elapsed();
        let count = |s| outcomes.iter().filter(|o| o.status == s).count();
        println!(
            "{name}: {} pass, {} fail, {} error, {} refused (dtype) of {} in {:.1} s",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Error),
            count(Status::Refused),
            outcomes.len(),
            took.as_secs_f64()
        );
        reports.push((name.clone(), outcomes, took));
    }

    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let md = markdown(&cases, &reports, filtered);
    let md_path = args.out.join("conformance.md");
    write(&md_path, &md)?;
    if let Some(docs) = &args.docs {
        write(docs, &md)?;
    }
    for (name, outcomes, _) in &reports {
        let mut tsv = String::new();
        for (c, o) in cases.iter().zip(outcomes) {
            let _ = writeln!(
                tsv,
                "{}\t{}\t{}\t{}",
                c.name,
                c.op,
                o.status.name(),
                o.detail
            );
        }
        write(&args.out.join(format!("results-{name}.tsv")), &tsv)?;
    }
    println!("onnx_conformance: wrote {}", md_path.display());

    if filtered {
        println!("onnx_conformance: filtered run: baseline not checked");
        return Ok(ExitCode::SUCCESS);
    }
    let passes: Vec<(String, usize)> = reports
        .iter()
        .map(|(n, o, _)| {
            (
                n.clone(),
                o.iter().filter(|o| o.status == Status::Pass).count(),
            )
        })
        .collect();
    if args.write_baseline {
        let mut base = read_baseline(&args.baseline).unwrap_or_default();
        for (n, p) in &passes {
            base.insert(n.clone(), *p);
        }
        let mut text = String::from(
            "# Pass counts of examples/onnx_conformance.rs over ONNX 1.17.0's node tests, per\n\
             # backend: the run fails when a backend passes fewer. Raise them when it passes more\n\
             # (cargo run --example onnx_conformance --features full -- --write-baseline).\n",
        );
        for (n, p) in &base {
            let _ = writeln!(text, "{n} {p}");
        }
        write(&args.baseline, &text)?;
        println!("onnx_conformance: wrote {}", args.baseline.display());
        return Ok(ExitCode::SUCCESS);
    }
    let base = read_baseline(&args.baseline)?;
    let mut dropped = false;
    for (n, p) in &passes {
        match base.get(n) {
            None => println!("baseline: {n} has no entry in {}", args.baseline.display()),
            Some(&b) if *p < b => {
                dropped = true;
                eprintln!("baseline: {n} passes {p}, below its baseline {b}: a regression");
            }
            Some(&b) if *p > b => println!(
                "baseline: {n} passes {p}, above its baseline {b}: raise it in {} \
                 (--write-baseline)",
                args.baseline.display()
            ),
            Some(_) => println!("baseline: {n} passes {p}, as its baseline"),
        }
    }
    Ok(if dropped {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_baseline(path: &Path) -> Result<BTreeMap<String, usize>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(n), Some(p), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{}: bad line `{line}`", path.display()));
        };
        let p = p
            .parse()
            .map_err(|_| format!("{}: bad count in `{line}`", path.display()))?;
        map.insert(n.to_string(), p);
    }
    Ok(map)
}

fn graph_inputs(g: &GraphProto) -> Vec<&ValueInfoProto> {
    g.input
        .iter()
        .filter(|i| !g.initializer.iter().any(|t| t.name == i.name))
        .collect()
}

fn refusal(v: &ValueInfoProto, role: &str) -> Option<String> {
    match v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) {
        None => Some(format!(
            "{role} `{}` is not a tensor (sequence, optional or map)",
            v.name
        )),
        Some(t) => match edgeai::onnx::elem_type_dtype(t.elem_type) {
            Some(_) => None,
            None => Some(format!(
                "{role} `{}`: dtype {}",
                v.name,
                edgeai::onnx::elem_type_name(t.elem_type)
            )),
        },
    }
}

fn read_cases(dir: &Path) -> Result<Vec<Case>, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    dirs.sort();
    let mut cases = Vec::new();
    let mut single_ops: BTreeMap<String, String> = BTreeMap::new();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let model = edgeai::onnx::read(d.join("model.onnx")).map_err(|e| e.to_string())?;
        let g = model.main_graph().ok_or("no graph")?;
        let op = match g.node.as_slice() {
            [n] if n.domain.is_empty() || n.domain == "ai.onnx" => n.op_type.clone(),
            [n] => format!("{}.{}", n.domain, n.op_type),
            _ => String::new(), // an expanded function body: named after its test below
        };
        if !op.is_empty() {
            single_ops.insert(name.clone(), op.clone());
        }
        let inputs = graph_inputs(g);
        let refused = inputs
            .iter()
            .map(|v| refusal(v, "input"))
            .chain(g.output.iter().map(|v| refusal(v, "output")))
            .find_map(|r| r);
        cases.push(Case {
            inputs: inputs.iter().map(|v| v.name.clone()).collect(),
            outputs: g.output.iter().map(|v| v.name.clone()).collect(),
            name,
            dir: d,
            op,
            refused,
        });
    }
    for c in cases.iter_mut().filter(|c| c.op.is_empty()) {
        let base = c
            .name
            .find("_expanded")
            .map_or(c.name.as_str(), |i| &c.name[..i]);
        c.op = match single_ops.get(base) {
            Some(op) => format!("{op} (expanded)"),
            None => "(several nodes)".into(),
        };
    }
    Ok(cases)
}

fn data_sets(dir: &Path) -> Vec<PathBuf> {
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    sets
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().replace('\t', " ")
}

fn run_case(
    backend: &std::sync::Arc<dyn edgeai::core::Backend>,
    case: &Case,
    limit: Duration,
) -> Outcome {
    if let Some(r) = &case.refused {
        return Outcome {
            status: Status::Refused,
            detail: r.clone(),
        };
    }
    let (tx, rx) = mpsc::channel();
    let backend = backend.clone();
    let (dir, inputs, outputs) = (case.dir.clone(), case.inputs.clone(), case.outputs.clone());
    let spawned = std::thread::Builder::new()
        .name("conformance-test".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                execute(&*backend, &dir, &inputs, &outputs)
            }));
            let o = r.unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                Outcome {
                    status: Status::Error,
                    detail: format!("panicked: {}", first_line(&msg)),
                }
            });
            let _ = tx.send(o);
        });
    if let Err(e) = spawned {
        return Outcome {
            status: Status::Error,
            detail: format!("cannot start a thread: {e}"),
        };
    }
    // Past the limit the test's thread is left running (detached): it cannot be stopped.
    rx.recv_timeout(limit).unwrap_or_else(|_| Outcome {
        status: Status::Error,
        detail: format!("timed out after {:.0} s", limit.as_secs_f64()),
    })
}

fn execute(
    backend: &dyn edgeai::core::Backend,
    dir: &Path,
    inputs: &[String],
    outputs: &[String],
) -> Outcome {
    // Details name the test's files relative to its folder (the table names the test).
    let folder = format!("{}/", dir.display());
    let error = |stage: &str, e: &dyn std::fmt::Display| Outcome {
        status: Status::Error,
        detail: format!(
            "{stage}: {}",
            first_line(&e.to_string()).replace(&folder, "")
        ),
    };
    let sets = data_sets(dir);
    if sets.is_empty() {
        return error("harness", &"no test_data_set_* folder");
    }
    // Every value is read before the model loads: a value edgeai cannot hold is `refused`
    // on every backend alike, whatever the backend would have said about the model.
    let mut data = Vec::with_capacity(sets.len());
    for set in &sets {
        let read = |kind: &str, n: usize| -> Result<Vec<Tensor>, Outcome> {
            (0..n)
                .map(|i| {
                    edgeai::onnx::read_tensor(set.join(format!("{kind}_{i}.pb"))).map_err(|e| {
                        let msg = e.to_string();
                        if msg.contains("unsupported dtype") {
                            Outcome {
                                status: Status::Refused,
                                detail: first_line(&msg).replace(&folder, ""),
                            }
                        } else {
                            error("harness", &e)
                        }
                    })
                })
                .collect()
        };
        let given = match read("input", inputs.len()) {
            Ok(v) => v,
            Err(o) => return o,
        };
        let expected = match read("output", outputs.len()) {
            Ok(v) => v,
            Err(o) => return o,
        };
        data.push((given, expected));
    }
    let model = match backend.load(
        dir.join("model.onnx").into(),
        &LoadOptions::new().with_threads(1),
    ) {
        Ok(m) => m,
        Err(e) => return error("load", &e),
    };
    for (given, expected) in data {
        let named = inputs.iter().cloned().zip(given).collect();
        let got = match model.run_named(named) {
            Ok(v) => v,
            Err(e) => return error("run", &e),
        };
        for (name, want) in outputs.iter().zip(&expected) {
            let Some((_, have)) = got.iter().find(|(n, _)| n == name) else {
                return Outcome {
                    status: Status::Fail,
                    detail: format!("output `{name}` missing"),
                };
            };
            if let Err(why) = compare(have, want) {
                return Outcome {
                    status: Status::Fail,
                    detail: format!("output `{name}`: {why}"),
                };
            }
        }
    }
    Outcome {
        status: Status::Pass,
        detail: String::new(),
    }
}

fn close(a: f64, e: f64) -> bool {
    if a.is_nan() || e.is_nan() {
        return a.is_nan() && e.is_nan();
    }
    if a.is_infinite() || e.is_infinite() {
        return a == e;
    }
    (a - e).abs() <= ATOL + RTOL * e.abs()
}

/// Shapes and dtypes exact; floats within tolerance; everything else exact (`TensorData`
/// equality, which covers every dtype edgeai gains without a change here; a wider float type
/// needs its arm in `floats`).
fn compare(have: &Tensor, want: &Tensor) -> Result<(), String> {
    if have.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} != expected {}",
            have.dtype(),
            want.dtype()
        ));
    }
    if have.shape() != want.shape() {
        return Err(format!(
            "shape {:?} != expected {:?}",
            have.shape(),
            want.shape()
        ));
    }
    match (floats(have.data()), floats(want.data())) {
        (Some(a), Some(e)) => {
            let bad = a.iter().zip(&e).position(|(&a, &e)| !close(a, e));
            match bad {
                None => Ok(()),
                Some(i) => {
                    let n = a.iter().zip(&e).filter(|(&a, &e)| !close(a, e)).count();
                    Err(format!(
                        "{n} of {} values differ; first at {i}: {} vs expected {}",
                        a.len(),
                        a[i],
                        e[i]
                    ))
                }
            }
        }
        _ if have.data() == want.data() => Ok(()),
        _ => Err(format!("{} values differ (exact comparison)", have.dtype())),
    }
}

fn floats(d: &TensorData) -> Option<Vec<f64>> {
    match d {
        TensorData::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
        TensorData::F16(v) => Some(v.iter().map(|&x: &f16| x.to_f64()).collect()),
        TensorData::BF16(v) => Some(v.iter().map(|&x: &bf16| x.to_f64()).collect()),
        TensorData::F64(v) => Some(v.clone()),
        _ => None,
    }
}

fn markdown(
    cases: &[Case],
    reports: &[(String, Vec<Outcome>, Duration)],
    filtered: bool,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# ONNX node-test conformance\n\n{} test(s){}: ONNX 1.17.0's backend node tests \
         (`models/onnx-node-tests`), compared with rtol {RTOL:e}, atol {ATOL:e}, NaN = NaN, \
         integers and bools exact, shapes exact. `refused` = an input or output type edgeai's \
         `Tensor` cannot hold (dtype, or a sequence / optional value).\n",
        cases.len(),
        if filtered { " (filtered)" } else { "" }
    );
    md.push_str(&totals_table(reports));
    md.push_str(&op_table(cases, reports));
    for (name, outcomes, _) in reports {
        let _ = writeln!(md, "\n## {name}: failures and errors\n");
        let _ = writeln!(md, "| test | op | status | detail |\n|---|---|---|---|");
        for (c, o) in cases.iter().zip(outcomes) {
            if matches!(o.status, Status::Fail | Status::Error) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} |",
                    c.name,
                    c.op,
                    o.status.name(),
                    o.detail.replace('|', "\\|")
                );
            }
        }
    }
    md
}

fn totals_table(reports: &[(String, Vec<Outcome>, Duration)]) -> String {
    let mut md = String::from(
        "| backend | pass | fail | error | refused (dtype) | total | time |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (name, outcomes, took) in reports {
        let c: Vec<usize> = STATUSES
            .iter()
            .map(|&s| outcomes.iter().filter(|o| o.status == s).count())
            .collect();
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {:.1} s |",
            c[0],
            c[1],
            c[2],
            c[3],
            outcomes.len(),
            took.as_secs_f64()
        );
    }
    md
}

fn op_table(cases: &[Case], reports: &[(String, Vec<Outcome>, Duration)]) -> String {
    let mut md = String::from("\n## Pass / tests per operator\n\n| op | tests |");
    for (n, _, _) in reports {
        let _ = write!(md, " {n} |");
    }
    md.push_str("\n|---|---:|");
    for _ in reports {
        md.push_str("---:|");
    }
    md.push('\n');
    let mut ops: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        ops.entry(c.op.as_str()).or_default().push(i);
    }
    for (op, idx) in ops {
        let _ = write!(md, "| {op} | {} |", idx.len());
        for (_, outcomes, _) in reports {
            let pass = idx
                .iter()
                .filter(|&&i| outcomes[i].status == Status::Pass)
                .count();
            let refused = idx
                .iter()
                .filter(|&&i| outcomes[i].status == Status::Refused)
                .count();
            if refused == idx.len() {
                md.push_str(" refused |");
            } else {
                let _ = write!(md, " {pass} |");
            }
        }
        md.push('\n');
    }
    md
}
