//! Compare every compiled-in graph backend on one ONNX model: load time, first run, median
//! and p90 latency, peak RSS, and how far each backend's outputs are from the first one's.
//!
//! ```text
//! cargo run --release --features tract,ort,candle --example compare_backends -- \
//!     models/face/sface.onnx --runs 20 --threads 2 --out-dir target/compare
//! cargo run --release --features tract,ort,candle --example compare_backends -- \
//!     models/cls/ppocr_mobilenetv3_cls.onnx --shape 1x3x48x192
//! ```
//!
//! Flags:
//! - `--runs N` timed runs per backend (default 20), `--warmup N` untimed runs (default 2);
//! - `--threads N` threads per backend (default: each backend's choice);
//! - `--out-dir DIR` where `<model>.csv`, `<model>.png` and `<model>.svg` go (default
//!   `target/compare`);
//! - `--shape AxBxC` the shape of the next input (repeat once per input, in order): fixes its
//!   symbolic dimensions; `--sym N` the size of any symbolic dimension left (default 1);
//! - `--seed N` the seed of the random inputs (default 42);
//! - `--font FILE` a TrueType font for the charts' text (default: DejaVu Sans or Liberation
//!   Sans where installed; without one the charts have bars only, the table and CSV all).
//!
//! Every backend gets the same seeded random inputs. Measurements come from `edgeai::bench`
//! (the `edgeai bench` command uses the same code). Backends run one after another in this
//! process; the peak RSS is reset before each load where the kernel allows it (see
//! `edgeai::bench`), so each figure is that backend's load and runs on top of what the
//! process already held.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use edgeai::bench::{self, BenchConfig, BenchReport, InputMaker};
use edgeai::core::{Dim, Tensor, TensorSpec};

struct Args {
    model: PathBuf,
    runs: usize,
    warmup: usize,
    threads: Option<usize>,
    out_dir: PathBuf,
    shapes: Vec<Vec<usize>>,
    sym: usize,
    seed: u64,
    font: Option<PathBuf>,
}

const USAGE: &str = "usage: compare_backends MODEL.onnx [--runs N] [--warmup N] [--threads N] \
[--out-dir DIR] [--shape AxBxC]... [--sym N] [--seed N] [--font FILE]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        model: PathBuf::new(),
        runs: 20,
        warmup: 2,
        threads: None,
        out_dir: PathBuf::from("target/compare"),
        shapes: Vec::new(),
        sym: 1,
        seed: 42,
        font: None,
    };
    let mut model = None;
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num =
            |flag: &str, v: String| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match arg.as_str() {
            "--runs" => a.runs = num("--runs", value("--runs")?)?.max(1),
            "--warmup" => a.warmup = num("--warmup", value("--warmup")?)?,
            "--threads" => a.threads = Some(num("--threads", value("--threads")?)?.max(1)),
            "--out-dir" => a.out_dir = value("--out-dir")?.into(),
            "--sym" => a.sym = num("--sym", value("--sym")?)?,
            "--seed" => a.seed = num("--seed", value("--seed")?)? as u64,
            "--font" => a.font = Some(value("--font")?.into()),
            "--shape" => {
                let v = value("--shape")?;
                let dims = v
                    .split(['x', ','])
                    .map(|d| num("--shape", d.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                a.shapes.push(dims);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with("--") => return Err(format!("unknown flag {s}\n{USAGE}")),
            s if model.is_none() => model = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument {s}\n{USAGE}")),
        }
    }
    a.model = model.ok_or(USAGE)?;
    Ok(a)
}

/// One backend's row: its report, or why it could not be measured.
struct Row {
    backend: String,
    result: Result<BenchReport, String>,
    max_abs_diff: Option<f64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let names = edgeai::available_backends();
    if names.is_empty() {
        return Err("no graph backend compiled in (enable tract, ort, candle or burn)".into());
    }
    let inputs = make_inputs(args, &names)?;
    let shapes: Vec<String> = inputs.iter().map(|t| format!("{:?}", t.shape())).collect();
    println!(
        "model {}  inputs {}  runs {}  warmup {}  threads {}",
        args.model.display(),
        shapes.join(" "),
        args.runs,
        args.warmup,
        args.threads
            .map_or("backend default".to_string(), |t| t.to_string())
    );
    let mut cfg = BenchConfig::new()
        .with_runs(args.runs)
        .with_warmup(args.warmup);
    if let Some(t) = args.threads {
        cfg = cfg.with_threads(t);
    }
    let mut rows: Vec<Row> = Vec::new();
    for name in &names {
        let result = edgeai::backend(name)
            .and_then(|b| {
                bench::measure(
                    b.as_ref(),
                    args.model.clone().into(),
                    InputMaker::Given(inputs.clone()),
                    &cfg,
                )
            })
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            eprintln!("{name}: not measured: {e}");
        }
        rows.push(Row {
            backend: name.to_string(),
            result,
            max_abs_diff: None,
        });
    }
    // Every output compared with the first measured backend's, by position.
    let reference = rows.iter().find_map(|r| {
        r.result
            .as_ref()
            .ok()
            .map(|rep| (r.backend.clone(), rep.outputs.clone()))
    });
    if let Some((_, want)) = &reference {
        for row in &mut rows {
            if let Ok(rep) = &row.result {
                row.max_abs_diff = max_abs_diff(&rep.outputs, want);
            }
        }
    }
    let ref_name = reference.as_ref().map_or("-", |(n, _)| n.as_str());
    let table = table(&rows, ref_name);
    print!("{table}");

    std::fs::create_dir_all(&args.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", args.out_dir.display()))?;
    let stem = args
        .model
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let csv_path = args.out_dir.join(format!("{stem}.csv"));
    std::fs::write(&csv_path, csv(&rows, args, &stem, ref_name))
        .map_err(|e| format!("cannot write {}: {e}", csv_path.display()))?;
    println!("wrote {}", csv_path.display());
    let title = format!(
        "{stem}: latency per backend ({} runs, threads {})",
        args.runs,
        args.threads.map_or("default".into(), |t| t.to_string())
    );
    let bars: Vec<(String, f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            r.result
                .as_ref()
                .ok()
                .map(|rep| (r.backend.clone(), rep.median_ms, rep.p90_ms))
        })
        .collect();
    if bars.is_empty() {
        return Err("no backend could run the model".into());
    }
    let labelled = chart::register_font(args.font.as_deref());
    if !labelled {
        eprintln!("no TrueType font found (pass --font FILE): the charts have bars only");
    }
    for ext in ["svg", "png"] {
        let path = args.out_dir.join(format!("{stem}.{ext}"));
        chart::write(&path, &title, &bars, labelled)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Seeded random inputs shaped from the first loadable backend's input specs, with the
/// `--shape` overrides and `--sym` for the symbolic dimensions left.
fn make_inputs(args: &Args, names: &[&str]) -> Result<Vec<Tensor>, String> {
    let mut errors = Vec::new();
    for name in names {
        let loaded = edgeai::backend(name)
            .and_then(|b| b.load(args.model.clone().into(), &edgeai::core::LoadOptions::new()));
        let model = match loaded {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let specs = model.inputs();
        if args.shapes.len() > specs.len() {
            return Err(format!(
                "{} --shape given, the model has {} input(s)",
                args.shapes.len(),
                specs.len()
            ));
        }
        let fixed: Vec<TensorSpec> = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut s = s.clone();
                if let Some(shape) = args.shapes.get(i) {
                    if let Some(dims) = &s.shape {
                        if dims.len() != shape.len() {
                            return Err(format!(
                                "--shape {shape:?} for input `{}` of shape {}",
                                s.name,
                                s.shape_string()
                            ));
                        }
                    }
                    s.shape = Some(shape.iter().map(|&d| Dim::Fixed(d)).collect());
                }
                Ok(s)
            })
            .collect::<Result<_, String>>()?;
        return bench::random_inputs(&fixed, args.seed, args.sym).map_err(|e| e.to_string());
    }
    Err(format!(
        "no backend could load {}: {}",
        args.model.display(),
        errors.join("; ")
    ))
}

fn as_f64(t: &Tensor) -> Vec<f64> {
    t.data().to_f64_vec()
}

/// Largest |a - b| over all outputs; `None` when the outputs differ in count or shape
/// (infinite would hide which); NaN on either side counts as infinitely far.
fn max_abs_diff(got: &[Tensor], want: &[Tensor]) -> Option<f64> {
    if got.len() != want.len() {
        return None;
    }
    let mut worst = 0f64;
    for (g, w) in got.iter().zip(want) {
        if g.shape() != w.shape() {
            return None;
        }
        for (a, b) in as_f64(g).into_iter().zip(as_f64(w)) {
            let d = (a - b).abs();
            worst = if d.is_nan() {
                f64::INFINITY
            } else {
                worst.max(d)
            };
        }
    }
    Some(worst)
}

fn rss_mib(rep: &BenchReport) -> String {
    rep.peak_rss_bytes.map_or("-".into(), |b| {
        format!("{:.1}", b as f64 / (1024.0 * 1024.0))
    })
}

fn diff_text(d: Option<f64>) -> String {
    d.map_or("shape mismatch".into(), |d| format!("{d:.2e}"))
}

fn table(rows: &[Row], reference: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:>10} {:>12} {:>11} {:>9} {:>9} {:>13}  max|diff| vs {reference}",
        "backend", "load ms", "first ms", "median ms", "p90 ms", "min ms", "peak RSS MiB"
    );
    for r in rows {
        match &r.result {
            Ok(rep) => {
                let _ = writeln!(
                    s,
                    "{:<8} {:>10.1} {:>12.2} {:>11.2} {:>9.2} {:>9.2} {:>13}  {}",
                    r.backend,
                    rep.load_ms,
                    rep.first_run_ms,
                    rep.median_ms,
                    rep.p90_ms,
                    rep.min_ms,
                    rss_mib(rep),
                    diff_text(r.max_abs_diff)
                );
            }
            Err(e) => {
                let _ = writeln!(s, "{:<8} not measured: {e}", r.backend);
            }
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv(rows: &[Row], args: &Args, model: &str, reference: &str) -> String {
    let mut s = String::from(
        "model,backend,threads,runs,load_ms,first_run_ms,median_ms,p90_ms,min_ms,\
peak_rss_mib,peak_rss_reset,max_abs_diff,reference,error\n",
    );
    let threads = args.threads.map_or("default".into(), |t| t.to_string());
    for r in rows {
        let _ = match &r.result {
            Ok(rep) => writeln!(
                s,
                "{},{},{threads},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{},",
                csv_field(model),
                r.backend,
                args.runs,
                rep.load_ms,
                rep.first_run_ms,
                rep.median_ms,
                rep.p90_ms,
                rep.min_ms,
                rss_mib(rep),
                rep.peak_rss_reset,
                r.max_abs_diff.map_or("".into(), |d| format!("{d:e}")),
                reference
            ),
            Err(e) => writeln!(
                s,
                "{},{},{threads},{},,,,,,,,,,{}",
                csv_field(model),
                r.backend,
                args.runs,
                csv_field(e)
            ),
        };
    }
    s
}

mod chart {
    //! Grouped bars (median and p90 per backend) with plotters, as SVG and PNG.

    use std::path::Path;

    use plotters::coord::Shift;
    use plotters::prelude::*;

    const W: u32 = 900;
    const H: u32 = 520;
    const MEDIAN: RGBColor = RGBColor(52, 101, 164);
    const P90: RGBColor = RGBColor(239, 153, 61);

    fn draw<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        title: &str,
        bars: &[(String, f64, f64)],
        text: bool,
    ) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let top = bars.iter().map(|b| b.2.max(b.1)).fold(0.0, f64::max) * 1.15;
        let n = bars.len() as f64;
        let mut builder = ChartBuilder::on(root);
        builder.margin(20);
        if text {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(40)
                .y_label_area_size(70);
        }
        let mut chart = builder
            .build_cartesian_2d(0.0..n, 0.0..top.max(1e-3))
            .map_err(e)?;
        if text {
            let label = |x: &f64| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-9 {
                    bars.get(i).map_or(String::new(), |b| b.0.clone())
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(bars.len() * 2 + 1)
                .x_label_formatter(&label)
                .y_desc("ms per run")
                .draw()
                .map_err(e)?;
        }
        for (i, (_, median, p90)) in bars.iter().enumerate() {
            let x = i as f64;
            chart
                .draw_series([
                    Rectangle::new([(x + 0.12, 0.0), (x + 0.5, *median)], MEDIAN.filled()),
                    Rectangle::new([(x + 0.5, 0.0), (x + 0.88, *p90)], P90.filled()),
                ])
                .map_err(e)?;
            if text {
                let style = ("sans-serif", 14).into_font().color(&BLACK);
                chart
                    .draw_series([
                        Text::new(format!("{median:.1}"), (x + 0.16, *median), style.clone()),
                        Text::new(format!("{p90:.1}"), (x + 0.54, *p90), style),
                    ])
                    .map_err(e)?;
            }
        }
        if text {
            chart
                .draw_series([Rectangle::new([(0.0, 0.0), (0.0, 0.0)], MEDIAN.filled())])
                .map_err(e)?
                .label("median")
                .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], MEDIAN.filled()));
            chart
                .draw_series([Rectangle::new([(0.0, 0.0), (0.0, 0.0)], P90.filled())])
                .map_err(e)?
                .label("p90")
                .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], P90.filled()));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        root.present().map_err(e)
    }

    /// Registers a TrueType font as plotters' "sans-serif" (`explicit`, else a common system
    /// font); false when none is found.
    pub fn register_font(explicit: Option<&Path>) -> bool {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/System/Library/Fonts/Supplemental/Arial.ttf",
            "C:\\Windows\\Fonts\\arial.ttf",
        ];
        let paths: Vec<std::path::PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => candidates.iter().map(Into::into).collect(),
        };
        for p in paths {
            if let Ok(bytes) = std::fs::read(&p) {
                // plotters keeps registered fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    }

    /// Writes the chart as SVG or (through the `image` crate) PNG, by the path's extension.
    /// `text`: whether a font is registered (plotters cannot lay out text without one).
    pub fn write(
        path: &Path,
        title: &str,
        bars: &[(String, f64, f64)],
        text: bool,
    ) -> Result<(), String> {
        if path.extension().is_some_and(|e| e == "svg") {
            let root = SVGBackend::new(path, (W, H)).into_drawing_area();
            return draw(&root, title, bars, text);
        }
        let mut buf = vec![0u8; (W * H * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
            draw(&root, title, bars, text)?;
        }
        let img = image::RgbImage::from_raw(W, H, buf).ok_or("PNG buffer size")?;
        img.save(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
