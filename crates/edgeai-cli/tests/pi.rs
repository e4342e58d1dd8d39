//! The `edgeai` binary cross-built for aarch64, run under `qemu-aarch64` as a Raspberry Pi 4
//! (`-cpu cortex-a72`: NEON, no dotprod) and a Pi 5 (`-cpu cortex-a76`: NEON + dotprod, no
//! i8mm), against this host's build on the same commands and files:
//!
//! - `face enroll` / `face identify --json`: the same faces, identities and candidates, cosines
//!   and detection scores within 1e-3, boxes within a pixel; the gallery enrolled on this host
//!   read on the Pi as well (a gallery file moves between machines);
//! - `chat --temperature 0 --max-tokens 16` on SmolLM2: the same 16 greedy tokens, on the kernel path
//!   each CPU gets (the header names it: `neon` on the A72, `dotprod` on the A76), and with the
//!   A76 forced onto `neon`;
//! - `run` on SFace with a fixed `.npy` input: outputs within 1e-4 of this host's, on tract and,
//!   where the aarch64 ONNX Runtime was fetched, on ort. qemu-user shows the program the
//!   host's x86 `/proc/cpuinfo`, on which ONNX Runtime's CPU probe (pytorch/cpuinfo) crashes
//!   (SIGSEGV before any session exists; a Pi has an ARM one), so the ort runs see the CPU
//!   model's own `/proc/cpuinfo`, bind-mounted in a private mount namespace (`unshare -rm`);
//!   where that is not allowed, the ort check says so and is skipped;
//! - a kernel path the CPU lacks (`EDGEAI_KERNEL=dotprod` on the A72, `i8mm` on the A76) is a
//!   usage error naming the path and what the CPU has, not an illegal instruction.
//!
//! `scripts/test-pi` cross-builds the binary and runs this test with `EDGEAI_AARCH64_BIN` set
//! (the README's test command does, when the cross toolchain and qemu are installed). Without
//! it, the test says so and checks nothing. qemu timings are not Pi timings: none is taken.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use edgeai::core::{npy, DType, Tensor};
use edgeai_testutil::{max_abs_diff, model_or_skip};
use serde_json::Value;

/// A machine the commands run on: this host, or qemu emulating a Pi's CPU.
struct Machine {
    name: &'static str,
    /// `None`: this host's binary, natively.
    cpu: Option<&'static str>,
    /// The kernel path the machine's CPU should get (checked on aarch64 only).
    kernel: &'static str,
    /// What Linux on that CPU shows in `/proc/cpuinfo` (per core): part number and features.
    cpuinfo: &'static str,
}

const HOST: Machine = Machine {
    name: "host",
    cpu: None,
    kernel: "",
    cpuinfo: "",
};
const PI4: Machine = Machine {
    name: "pi4",
    cpu: Some("cortex-a72"),
    kernel: "neon",
    cpuinfo: "Features\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n\
               CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n",
};
const PI5: Machine = Machine {
    name: "pi5",
    cpu: Some("cortex-a76"),
    kernel: "dotprod",
    cpuinfo: "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid \
               asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n\
               CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n",
};

struct Setup {
    aarch64_bin: PathBuf,
    sysroot: String,
    models: PathBuf,
    dir: PathBuf,
    /// Whether qemu runs can see an ARM `/proc/cpuinfo` (`unshare -rm` is allowed).
    arm_cpuinfo: bool,
}

impl Setup {
    /// `edgeai ARGS` on `m`: natively, or under qemu with `m`'s own `/proc/cpuinfo` where a
    /// private mount namespace is allowed (see the module docs).
    fn command(&self, m: &Machine, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = match m.cpu {
            None => Command::new(env!("CARGO_BIN_EXE_edgeai")),
            Some(cpu) if self.arm_cpuinfo => {
                let fake = self.dir.join(format!("{}-cpuinfo", m.name));
                let mut c = Command::new("unshare");
                c.args(["-rm", "sh", "-c"])
                    .arg("mount --bind \"$0\" /proc/cpuinfo && exec \"$@\"")
                    .arg(&fake)
                    .args(["qemu-aarch64", "-cpu", cpu, "-L", &self.sysroot])
                    .arg(&self.aarch64_bin);
                c
            }
            Some(cpu) => {
                let mut c = Command::new("qemu-aarch64");
                c.args(["-cpu", cpu, "-L", &self.sysroot])
                    .arg(&self.aarch64_bin);
                c
            }
        };
        c.args(args)
            .env_remove("RUST_LOG")
            .env_remove("EDGEAI_KERNEL")
            .env_remove("ORT_DYLIB_PATH")
            .env("EDGEAI_MODELS", &self.models);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output()
            .expect("the edgeai binary (or qemu-aarch64) runs")
    }

    /// Runs and expects success; returns stdout and stderr.
    fn ok(&self, m: &Machine, args: &[&str], env: &[(&str, &str)]) -> (String, String) {
        let o = self.command(m, args, env);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert!(
            o.status.success(),
            "{} `edgeai {}` failed ({}):\n{err}",
            m.name,
            args.join(" "),
            o.status
        );
        (out, err)
    }

    fn model(&self, rel: &str) -> String {
        s(&self.models.join(rel)).to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The setup, or `None` (with a message) when there is no aarch64 binary or a model is missing.
fn setup(tag: &str, need: &[&str]) -> Option<Setup> {
    let Some(bin) = std::env::var_os("EDGEAI_AARCH64_BIN") else {
        eprintln!("skipping: EDGEAI_AARCH64_BIN not set (scripts/test-pi cross-builds it and runs this test)");
        return None;
    };
    let aarch64_bin = PathBuf::from(bin);
    assert!(
        aarch64_bin.is_file(),
        "EDGEAI_AARCH64_BIN={} is not a file",
        aarch64_bin.display()
    );
    if !need.iter().all(|rel| model_or_skip(rel).is_some()) {
        return None;
    }
    let models = edgeai_testutil::models_dir().expect("models folder");
    let dir = std::env::temp_dir().join(format!("edgeai-pi-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let arm_cpuinfo = Command::new("unshare")
        .args(["-rm", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    for m in [&PI4, &PI5] {
        // A Pi's four cores, as Linux lists them.
        let cores: String = (0..4)
            .map(|i| format!("processor\t: {i}\nBogoMIPS\t: 108.00\n{}\n", m.cpuinfo))
            .collect();
        std::fs::write(dir.join(format!("{}-cpuinfo", m.name)), cores).unwrap();
    }
    if !arm_cpuinfo {
        eprintln!("note: `unshare -rm` is not allowed here: qemu runs see the host's /proc/cpuinfo (tract then warns that it cannot read the CPU features)");
    }
    Some(Setup {
        arm_cpuinfo,
        aarch64_bin,
        sysroot: std::env::var("EDGEAI_QEMU_SYSROOT")
            .unwrap_or_else(|_| "/usr/aarch64-linux-gnu".into()),
        models,
        dir,
    })
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Asserts two `face identify --json` documents agree: faces, identities, candidates,
/// cosines and detection scores within 1e-3, boxes within a pixel. Returns the largest cosine
/// difference.
fn assert_same_faces(what: &str, want: &Value, got: &Value) -> f64 {
    let mut worst = 0f64;
    let (wf, gf) = (
        want["faces"].as_array().unwrap(),
        got["faces"].as_array().unwrap(),
    );
    assert_eq!(wf.len(), gf.len(), "{what}: face count\n{want}\n{got}");
    for (i, (w, g)) in wf.iter().zip(gf).enumerate() {
        assert_eq!(w["identity"], g["identity"], "{what}: face {i} identity");
        let f = |v: &Value| v.as_f64().unwrap();
        assert!(
            close(f(&w["detection"]), f(&g["detection"]), 1e-3),
            "{what}: face {i} detection {} vs {}",
            w["detection"],
            g["detection"]
        );
        for k in 0..4 {
            assert!(
                close(f(&w["box"][k]), f(&g["box"][k]), 1.0),
                "{what}: face {i} box {} vs {}",
                w["box"],
                g["box"]
            );
        }
        let (wc, gc) = (
            w["candidates"].as_array().unwrap(),
            g["candidates"].as_array().unwrap(),
        );
        assert_eq!(wc.len(), gc.len(), "{what}: face {i} candidates");
        for (a, b) in wc.iter().zip(gc) {
            assert_eq!(a["name"], b["name"], "{what}: face {i} candidate order");
            worst = worst.max((f(&a["cosine"]) - f(&b["cosine"])).abs());
            assert!(
                close(f(&a["cosine"]), f(&b["cosine"]), 1e-3),
                "{what}: face {i} cosine of {}: {} vs {}",
                a["name"],
                a["cosine"],
                b["cosine"]
            );
        }
    }
    worst
}

#[test]
fn face_identities_match_the_host_on_pi4_and_pi5() {
    let photos = [
        "photos/obama.jpg",
        "photos/biden.jpg",
        "photos/obama2.jpg",
        "photos/t1.jpg",
    ];
    let mut need = vec!["face/yunet.onnx", "face/sface.onnx"];
    need.extend(photos);
    let Some(su) = setup("face", &need) else {
        return;
    };
    let photo = |rel: &str| su.model(rel);
    let gallery = |m: &Machine| s(&su.dir.join(format!("{}.sqlite", m.name))).to_string();
    let identify = |m: &Machine, g: &str, p: &str| -> Value {
        let out_png = su.dir.join(format!("{}-{}.png", m.name, p.len()));
        let (out, _) = su.ok(
            m,
            &[
                "face",
                "--backend",
                "tract",
                "--gallery",
                g,
                "--json",
                "identify",
                &photo(p),
                "--out",
                s(&out_png),
            ],
            &[],
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{}: {e}: {out}", m.name))
    };
    let run = |m: &Machine| -> Vec<Value> {
        let g = gallery(m);
        for (name, p) in [("obama", "photos/obama.jpg"), ("biden", "photos/biden.jpg")] {
            su.ok(
                m,
                &[
                    "face",
                    "--backend",
                    "tract",
                    "--gallery",
                    &g,
                    "enroll",
                    name,
                    &photo(p),
                ],
                &[],
            );
        }
        ["photos/obama2.jpg", "photos/t1.jpg"]
            .iter()
            .map(|p| identify(m, &g, p))
            .collect()
    };
    let host = run(&HOST);
    // What the comparison rests on, so that it cannot pass on two empty answers.
    assert_eq!(host[0]["faces"][0]["identity"], "obama", "{}", host[0]);
    assert!(
        host[1]["faces"].as_array().unwrap().len() >= 2,
        "{}",
        host[1]
    );
    // The two emulated machines at once (each qemu runs the program on one host core).
    let pis = std::thread::scope(|sc| {
        let a = sc.spawn(|| run(&PI4));
        let b = sc.spawn(|| run(&PI5));
        [(&PI4, a.join().unwrap()), (&PI5, b.join().unwrap())]
    });
    for (m, docs) in &pis {
        let mut worst = 0f64;
        for (want, got) in host.iter().zip(docs) {
            worst = worst.max(assert_same_faces(
                &format!("{} {}", m.name, want["photo"]),
                want,
                got,
            ));
        }
        eprintln!(
            "{}: same faces and identities as the host on obama2.jpg (1) and t1.jpg ({}); cosines at most {worst:.1e} apart",
            m.name,
            docs[1]["faces"].as_array().unwrap().len()
        );
    }
    // The host's gallery file, read on the Pi.
    let got = identify(&PI5, &gallery(&HOST), "photos/obama2.jpg");
    let worst = assert_same_faces("pi5 on the host's gallery", &host[0], &got);
    eprintln!("pi5 on the gallery enrolled on the host: same identity, cosines {worst:.1e} apart");
    std::fs::remove_dir_all(&su.dir).unwrap();
}

#[test]
fn greedy_chat_matches_the_host_on_each_kernel_path() {
    let llm = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
    let Some(su) = setup("chat", &[llm]) else {
        return;
    };
    let model = su.model(llm);
    let args = [
        "chat",
        &model,
        "--prompt",
        "Name three uses of a Raspberry Pi.",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--threads",
        "2",
    ];
    let (want, header) = su.ok(&HOST, &args, &[]);
    // A prompt whose answer is longer than 16 tokens, so that all 16 are compared.
    assert_eq!(decoded(&header), 16, "host: {header}");
    assert!(want.contains("Raspberry Pi"), "host: {want}");
    eprintln!("host ({}): {}", kernels(&header), want.trim());
    for (m, forced) in [(&PI4, None), (&PI5, None), (&PI5, Some("neon"))] {
        let env: Vec<(&str, &str)> = forced.map(|k| ("EDGEAI_KERNEL", k)).into_iter().collect();
        let (got, header) = su.ok(m, &args, &env);
        let path = forced.unwrap_or(m.kernel);
        assert_eq!(
            kernels(&header),
            path,
            "{}: kernel path in the header: {header}",
            m.name
        );
        assert_eq!(decoded(&header), 16, "{}: {header}", m.name);
        assert_eq!(
            got, want,
            "{} ({path}): greedy text differs from the host's",
            m.name
        );
        eprintln!("{} ({path}): the host's 16 greedy tokens", m.name);
    }
}

/// The decoded token count in `edgeai chat`'s totals (`... | decode: N tokens in ...`).
fn decoded(stderr: &str) -> usize {
    stderr
        .split("decode: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The kernel path named in `edgeai chat`'s header (the native engine describes itself as
/// `engine edgeai (llama, kernels NAME packed, f16 KV)`).
fn kernels(header: &str) -> String {
    header
        .split_once("kernels ")
        .map(|(_, f)| {
            f.split([' ', ',', '(', ')'])
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

#[test]
fn the_kernel_path_is_read_from_the_engine_description() {
    let h = "model m.gguf | engine edgeai (llama, kernels neon packed, f16 KV) | 2 thread(s)";
    assert_eq!(kernels(h), "neon");
    assert_eq!(
        kernels("engine edgeai (llama, kernels dotprod, f32 KV)"),
        "dotprod"
    );
    assert_eq!(kernels("engine candle"), "");
}

#[test]
fn sface_outputs_match_the_host_on_tract_and_ort() {
    let Some(su) = setup("run", &["face/sface.onnx"]) else {
        return;
    };
    let model = su.model("face/sface.onnx");
    // A fixed input: a smooth pattern in SFace's input range, the same file for every machine.
    let (c, h, w) = (3usize, 112usize, 112usize);
    let data: Vec<f32> = (0..c * h * w)
        .map(|i| {
            let (ch, y, x) = (i / (h * w), (i / w) % h, i % w);
            127.5 + 120.0 * ((x as f32 * 0.11 + ch as f32).sin() * (y as f32 * 0.07).cos())
        })
        .collect();
    let input = su.dir.join("input.npy");
    npy::write(&input, &Tensor::from_vec(vec![1, c, h, w], data).unwrap()).unwrap();
    let input_name = {
        let b = edgeai::backend("tract").unwrap();
        let m = b
            .load(model.as_str().into(), &edgeai::core::LoadOptions::new())
            .unwrap();
        m.inputs()[0].name.clone()
    };
    let arg = format!("{input_name}={}", s(&input));
    let outputs = |m: &Machine, backend: &str, env: &[(&str, &str)]| -> Vec<Tensor> {
        let dir = su.dir.join(format!("{}-{backend}", m.name));
        su.ok(
            m,
            &[
                "run",
                &model,
                "--backend",
                backend,
                "--input",
                &arg,
                "--output-dir",
                s(&dir),
            ],
            env,
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no output written", m.name);
        files.iter().map(|f| npy::read(f).unwrap()).collect()
    };
    let want = outputs(&HOST, "tract", &[]);
    let ort_lib = su.models.join("lib/aarch64/libonnxruntime.so.1.31.1");
    let mut runs = vec![(&PI4, "tract"), (&PI5, "tract")];
    if ort_lib.is_file() && su.arm_cpuinfo {
        runs.extend([(&PI4, "ort"), (&PI5, "ort")]);
    } else if !su.arm_cpuinfo {
        eprintln!("not checking ort on aarch64: `unshare -rm` (a private mount namespace for an ARM /proc/cpuinfo) is not allowed here");
    } else {
        eprintln!(
            "not checking ort on aarch64: {} not fetched (scripts/fetch-models --only ort --ort-arch aarch64)",
            ort_lib.display()
        );
    }
    for (m, backend) in runs {
        let env = if backend == "ort" {
            vec![("ORT_DYLIB_PATH", s(&ort_lib))]
        } else {
            vec![]
        };
        let got = outputs(m, backend, &env);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.dtype(), DType::F32);
            let worst = max_abs_diff(g, w);
            let scale = w
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.abs())
                .fold(0f32, f32::max);
            assert!(scale > 0.01, "a degenerate output ({scale})");
            assert!(
                worst <= 1e-4,
                "{} {backend}: max abs difference {worst} from the host",
                m.name
            );
            eprintln!(
                "{} {backend}: max abs difference {worst:.2e} from the host (outputs up to {scale:.2})",
                m.name
            );
        }
    }
    std::fs::remove_dir_all(&su.dir).unwrap();
}

#[test]
fn a_kernel_path_the_cpu_lacks_is_a_clear_error() {
    let Some(su) = setup("kernel", &[]) else {
        return;
    };
    for (m, path) in [(&PI4, "dotprod"), (&PI4, "i8mm"), (&PI5, "i8mm")] {
        let o = su.command(m, &["inspect", "nofile.gguf"], &[("EDGEAI_KERNEL", path)]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{} {path}: {err}", m.name);
        assert!(
            err.contains(&format!("EDGEAI_KERNEL={path}")) && err.contains(m.kernel),
            "{} {path}: the message names the path and what the CPU has: {err}",
            m.name
        );
        assert!(!err.contains("panicked"), "{err}");
        eprintln!("{} EDGEAI_KERNEL={path}: {}", m.name, err.trim());
    }
    std::fs::remove_dir_all(&su.dir).unwrap();
}
