//! Real-file check: our dequantization of every tensor in the fetched GGUF models is
//! bit-identical to candle-core's, and `QMatrix::matvec` agrees with the dequantized product.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::Device;
use edgeai_core::paths;
use edgeai_core::quant::{dequantize, GgmlType, QMatrix, Scratch};

fn our_type(t: GgmlDType) -> Option<GgmlType> {
    Some(match t {
        GgmlDType::F32 => GgmlType::F32,
        GgmlDType::F16 => GgmlType::F16,
        GgmlDType::BF16 => GgmlType::BF16,
        GgmlDType::Q4_0 => GgmlType::Q4_0,
        GgmlDType::Q4_1 => GgmlType::Q4_1,
        GgmlDType::Q5_0 => GgmlType::Q5_0,
        GgmlDType::Q8_0 => GgmlType::Q8_0,
        GgmlDType::Q4K => GgmlType::Q4K,
        GgmlDType::Q6K => GgmlType::Q6K,
        _ => return None,
    })
}

/// Checks every tensor; returns the per-type tensor counts.
fn check_file(rel: &str, must_have: &[GgmlType]) {
    let Some(path) = paths::model_path(std::env::var_os(paths::MODELS_ENV), rel) else {
        eprintln!("skipping: {rel} not fetched (run scripts/fetch-models)");
        return;
    };
    let mut f = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<_> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let mut counts = std::collections::BTreeMap::new();
    let mut matvec_checked = std::collections::HashSet::new();
    for name in names {
        let info = &content.tensor_infos[&name];
        let ty = our_type(info.ggml_dtype)
            .unwrap_or_else(|| panic!("{name}: unsupported type {:?}", info.ggml_dtype));
        let elems = info.shape.elem_count();
        let nbytes = ty.row_bytes(elems).unwrap();
        let mut raw = vec![0u8; nbytes];
        f.seek(SeekFrom::Start(content.tensor_data_offset + info.offset))
            .unwrap();
        f.read_exact(&mut raw).unwrap();

        let mut ours = vec![0f32; elems];
        dequantize(ty, &raw, &mut ours).unwrap();
        let theirs = content
            .tensor(&mut f, &name, &Device::Cpu)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(theirs.len(), elems, "{name}");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                a.to_bits() == b.to_bits(),
                "{name} ({ty}) element {i}: ours {a} candle {b}"
            );
        }
        *counts.entry(ty.name()).or_insert(0usize) += 1;

        // One 2-D matrix per type: the kernel agrees with the dequantized product.
        let dims = info.shape.dims();
        if dims.len() == 2 && matvec_checked.insert(ty) {
            let (rows, cols) = (dims[0], dims[1]);
            let rows = rows.min(512);
            let m =
                QMatrix::new(ty, rows, cols, &raw[..rows * ty.row_bytes(cols).unwrap()]).unwrap();
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
                .collect();
            let mut y = vec![0f32; rows];
            m.matvec(&x, &mut y, &mut Scratch::new()).unwrap();
            for r in 0..rows {
                let w = &ours[r * cols..(r + 1) * cols];
                let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mass: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                // Activation quantization (8-bit) error: well under 2% of the L1 mass.
                assert!(
                    (y[r] as f64 - exact).abs() <= 0.02 * mass + 1e-6,
                    "{name} ({ty}) row {r}: {} vs {exact} (mass {mass})",
                    y[r]
                );
            }
        }
    }
    eprintln!("{rel}: bit-exact vs candle for {counts:?}");
    for t in must_have {
        assert!(counts.contains_key(t.name()), "{rel}: no {t} tensor found");
    }
}

#[test]
fn smollm2_q4_1_dequantizes_like_candle() {
    check_file(
        "llm/SmolLM2-135M-Instruct.Q4_1.gguf",
        &[GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F32],
    );
}

#[test]
fn gemma3_q4_k_m_dequantizes_like_candle() {
    check_file(
        "llm/gemma-3-270m-Q4_K_M.gguf",
        &[GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q5_0, GgmlType::Q8_0],
    );
}

/// Without the K-quant model file: blocks quantized by candle (llama.cpp's quantizer port)
/// dequantize bit-identically with our code, and our kernel agrees with candle's matmul.
#[test]
fn candle_quantized_blocks_match() {
    use candle_core::quantized::{QMatMul, QTensor};
    use candle_core::{Module, Tensor};
    let (rows, cols) = (64, 512);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| (((i * 7919) % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32))
        .collect();
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) / 48.0)
        .collect();
    let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
    for (ct, ty) in [
        (GgmlDType::Q4_0, GgmlType::Q4_0),
        (GgmlDType::Q4_1, GgmlType::Q4_1),
        (GgmlDType::Q5_0, GgmlType::Q5_0),
        (GgmlDType::Q8_0, GgmlType::Q8_0),
        (GgmlDType::Q4K, GgmlType::Q4K),
        (GgmlDType::Q6K, GgmlType::Q6K),
    ] {
        let q = QTensor::quantize(&wt, ct).unwrap();
        let raw = q.data().unwrap().into_owned();
        let theirs = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let m = QMatrix::new(ty, rows, cols, &raw).unwrap();
        let ours = m.dequantize();
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ty} element {i}: {a} vs {b}");
        }
        let mut y = vec![0f32; rows];
        m.matvec(&x, &mut y, &mut Scratch::new()).unwrap();
        let cy = QMatMul::from_qtensor(q)
            .unwrap()
            .forward(&xt)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for r in 0..rows {
            let w = &ours[r * cols..(r + 1) * cols];
            let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            // Worst case of 8-bit activation rounding: half a step (max|x|/127/2) per weight.
            let bound: f64 = w.iter().map(|a| a.abs() as f64).sum::<f64>() / 254.0;
            assert!(
                (y[r] as f64 - exact).abs() <= bound,
                "{ty} row {r}: ours {} exact {exact}",
                y[r]
            );
            assert!(
                (cy[r] as f64 - exact).abs() <= bound,
                "{ty} row {r}: candle {} exact {exact}",
                cy[r]
            );
            if matches!(
                ty,
                GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::Q6K
            ) {
                // Same activation quantization as candle (Q8_0 / Q8_K) and exact integer
                // dots: only the f32 summation order differs.
                let tol = 1e-4 * cy[r].abs().max(1.0);
                assert!(
                    (y[r] - cy[r]).abs() <= tol,
                    "{ty} row {r}: ours {} candle {}",
                    y[r],
                    cy[r]
                );
            }
            // Q4_1 / Q8_0: candle quantizes activations differently (Q8_1 with an f16 block
            // sum; its own GEMV path), so only the bound above applies.
        }
    }
}
