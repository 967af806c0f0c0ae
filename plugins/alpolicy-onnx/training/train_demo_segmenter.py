"""Train the tiny demo instance-segmentation model shipped as ``alpolicy_onnx/models/demo-shapes-seg.onnx``.

Run (from ``plugins/alpolicy-onnx``, in an environment with torch, numpy, Pillow, onnx, onnxruntime)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python training/train_demo_segmenter.py \
        --out alpolicy_onnx/models/demo-shapes-seg.onnx

It is the shipped demo detector (``demo-shapes.onnx``, made by ``train_demo_detector.py``, whose
pieces this script imports: the network, the frames, the assignment, the export) plus a YOLOv8-seg
mask head trained on the detector's frozen features. Everything is generated; nothing is downloaded.

Data
    As the detector's: frames of :func:`alpolicy_onnx.synthetic.random_scene` from one
    ``numpy.random.default_rng(seed)`` stream (``--seed``, default 0), 35 % hard, varied sizes,
    half JPEG re-encoded, letterboxed to 320x320, batches of 8 (4 new frames, 4 from a buffer of
    2048), random flips. The mask of a shape is its exact outline (``random_scene(polygons=True)``,
    amodal like its box: an occluded shape's mask covers the hidden part too), filled at 320x320
    and averaged over 4x4 pixels into a soft 80x80 target. Validation: 200 clean 640x480 frames of
    seed 999 and 100 hard ones of seed 1000; the shipped-model test uses seeds 424244 and 424245.

Model (304,999 parameters, 52,416 of them trained here; the ONNX file is 1.26 MB)
    The detector's network, with the weights of ``demo-shapes.onnx`` (its export folded each batch
    norm into its convolution; :func:`load_detector` puts them back and the run stops unless the
    rebuilt detector answers as the file does, within 1e-3) and frozen: boxes and class scores are
    the shipped detector's. Added, as in YOLOv8-seg: 32 mask coefficients per anchor (a 3x3 + 1x1
    head on the fused stride-8 map) and 32 prototype masks at stride 4 (80x80: the fused map
    through a 3x3 conv, upsampled, joined to the stride-4 stem, then 1x1, depthwise 3x3, 1x1 and
    1x1 convs). An instance's mask is ``sigmoid(coefficients @ prototypes)``, cropped to its box.

Training
    Only the mask head learns. Positive cells are the detector's (centre-sampling assignment);
    the loss is, for each of them, the binary cross-entropy of its mask logits against its
    ground-truth shape's soft mask, averaged over the prototype pixels inside the ground-truth box
    (as Ultralytics crops it), then over the cells. AdamW (lr 3e-3, weight decay 5e-4), 100
    warm-up steps then cosine decay to 2 %, batch 8, ``--steps`` (default 2000: 16,000 frames seen,
    8,000 rendered). Why build on the detector: training everything from scratch ran at 3 s a step
    on the shared machine, far beyond the 45 minutes allowed; the frozen detector costs only its
    forward pass, and boxes need no new training.

Export
    ONNX opset 17, input ``images`` ``[batch, 3, 320, 320]`` (RGB, 0..1, dynamic batch), the
    standard Ultralytics -seg layout: ``output0`` ``[batch, 4 + 3 + 32, 1600]`` (``cx, cy, w, h`` in
    input pixels, 3 class sigmoid scores, 32 mask coefficients) and ``output1`` ``[batch, 32, 80, 80]``
    prototypes. Metadata: ``task: segment``, ``names``, ``imgsz``, ``stride``, ``description``,
    ``author``, ``version``.

Validation (printed at the end of a run): box mAP@0.5 as the detector's; mask mAP@0.5, the same
COCO/VOC matching with the IoU of the masks (:func:`alpolicy_onnx.metrics.mean_average_precision`
with a raster overlap); and the mean mask IoU of the ground-truth shapes (each one's best IoU with a
detection of its class with confidence >= 0.25; 0 when there is none). Masks are compared at the
model's input resolution (320x240 for a 640x480 frame): the predicted mask upsampled bilinearly from
80x80, cropped to its box, thresholded at 0.5, against the ground-truth outline filled at that scale.

Measured on the 2-core development machine with ``torch.set_num_threads(1)``, in the run that
produced the shipped file (a run prints these at its end):

* 2000 steps x batch 8 (seed 0) took 14.4 min of training (2.8 min of it rendering frames), 15.1 min
  with validation and export, with torch 2.14.1 (CPU, one thread) while other work kept the
  machine's cores busy (load average 4-7 on 2 cores). The rebuilt detector answered within 1.1e-4
  of ``demo-shapes.onnx``.
* Clean validation frames (seed 999, 200 frames, 605 shapes), after 500, 1000, 1500, 2000 steps:
  mask mAP@0.5 0.9471, 0.9470, 0.9465, 0.9465 (at the end: triangle 0.916, circle 0.948, square
  0.976); mean mask IoU 0.8580, 0.8594, 0.8684, 0.8682; box mAP@0.5 0.9501 throughout (the detector's).
* Hard validation frames (seed 1000, 100 frames, 330 shapes): box mAP@0.5 0.881, mask mAP@0.5 0.872
  (square 0.882, circle 0.923, triangle 0.812), mean mask IoU 0.782.
* The mask loss (running mean) fell from 0.72 at step 100 to 0.21 at step 500 and 0.20 at the
  end: the mask mAP is then bounded by the boxes (a mask is cropped to its box), the mean IoU by
  the 80x80 prototypes on small shapes.
* Through the backend (``onnx:demo-seg``: ``alpolicy_onnx.masks`` polygons in pixels of the frame,
  scored with :func:`alpolicy_onnx.metrics.polygon_iou`), on the shipped-model test's 120 clean
  frames of seed 424244: box mAP@0.5 0.960, mask mAP@0.5 0.957, mean mask IoU 0.876; on its 60
  hard frames of seed 424245: mask mAP@0.5 0.847, mean mask IoU 0.765.
* The data stream is deterministic for a seed; the run was not repeated, so whether a rerun gives
  the same bytes (rather than a model of the same quality) is unchecked.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from train_demo_detector import (  # noqa: E402
    GRID,
    IMGSZ,
    NUM_CLASSES,
    STRIDE,
    VAL_SEED,
    Batcher,
    TinyDetector,
    assign,
    conv,
    export,
    flip,
    make_val,
    render_frame,
    truth_boxes,
)

from alpolicy_onnx.decode import nms  # noqa: E402
from alpolicy_onnx.metrics import mean_average_precision, per_class_average_precision  # noqa: E402
from alpolicy_onnx.synthetic import CLASS_NAMES  # noqa: E402

N_MASKS = 32
PROTO_STRIDE = 4
PROTO = IMGSZ // PROTO_STRIDE  # 80


DETECTOR = HERE.parent / "alpolicy_onnx" / "models" / "demo-shapes.onnx"
DETECTOR_PARTS = ("stem", "p3", "p4", "fuse", "cls_head", "box_head")


class TinySegmenter(TinyDetector):
    """The demo detector (frozen) plus YOLOv8-seg mask coefficients and prototypes (trained)."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 48, n_masks: int = N_MASKS):
        super().__init__(num_classes, width)
        self.coef_head = nn.Sequential(conv(64, 48), nn.Conv2d(48, n_masks, 1))
        self.proto_lateral = conv(64, 32)  # at stride 8, then upsampled
        self.proto = nn.Sequential(
            conv(32 + 32, 32, 1),
            nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32), nn.SiLU(inplace=True),
            conv(32, 32, 1),
            nn.Conv2d(32, n_masks, 1),
        )
        for part in DETECTOR_PARTS:
            getattr(self, part).requires_grad_(False)

    def train(self, mode: bool = True) -> "TinySegmenter":
        super().train(mode)
        for part in DETECTOR_PARTS:  # the detector's batch norms keep its statistics
            getattr(self, part).eval()
        return self

    def masks(self, s4: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask coefficients ``[B, 32, A]`` and prototypes ``[B, 32, 80, 80]`` from the detector's feature maps."""
        coeffs = self.coef_head(f).flatten(2)
        up = F.interpolate(self.proto_lateral(f), scale_factor=2.0, mode="nearest")
        return coeffs, self.proto(torch.cat([s4, up], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s4, f = self.features(x)
        coeffs, protos = self.masks(s4, f)
        return torch.cat([self.boxes(*self.heads(f)), coeffs], 1), protos


def load_detector(model: TinyDetector, path: Path = DETECTOR) -> int:
    """Give ``model``'s detector part the shipped detector's weights; returns the number of convolutions set.

    The export folded each batch norm into its convolution (weight and bias): the convolution
    gets the folded weight and its batch norm becomes the identity plus the folded bias. ONNX
    node names carry the module paths (``/stem/stem.0/stem.0.0/Conv`` is ``stem.0.0``).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    modules = dict(model.named_modules())
    count = 0
    with torch.no_grad():
        for node in graph.node:
            if node.op_type != "Conv":
                continue
            name = node.name.rsplit("/", 2)[-2]
            weight, bias = (torch.from_numpy(values[x].copy()) for x in node.input[1:3])
            module = modules[name]
            module.weight.copy_(weight)
            if module.bias is not None:
                module.bias.copy_(bias)
            else:
                norm = modules[name[:-1] + "1"]  # conv() is Sequential(Conv2d, BatchNorm2d, SiLU)
                norm.running_mean.zero_()
                norm.running_var.fill_(1.0 - norm.eps)
                norm.weight.fill_(1.0)
                norm.bias.copy_(bias)
            count += 1
    return count


def check_detector(model: TinySegmenter, path: Path = DETECTOR) -> float:
    """The largest difference between ``model``'s boxes and scores and the shipped detector's, on a few frames."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.from_numpy(np.stack([f[0] for f in make_val(4, seed=VAL_SEED + 2)]))
    model.eval()
    with torch.no_grad():
        ours = model(x)[0][:, :4 + NUM_CLASSES].numpy()
    model.train()
    theirs = session.run(None, {"images": x.numpy()})[0]
    return float(np.abs(ours - theirs).max())


# ------------------------------------------------------------------------------------------ data


def fill(points: list[dict], ratio: float, pad: tuple[float, float], size: int = IMGSZ) -> np.ndarray:
    """A ground-truth outline (frame pixels) filled at input resolution: uint8 ``[size, size]`` 0/255."""
    canvas = Image.new("L", (size, size))
    polygon = [(p["x"] * ratio + pad[0], p["y"] * ratio + pad[1]) for p in points]
    if len(polygon) >= 3:
        ImageDraw.Draw(canvas).polygon(polygon, fill=255)
    return np.asarray(canvas)


def render_seg_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A letterboxed frame, its boxes ``[n, 5]`` and soft masks (uint8 ``[n, 80, 80]``) in input pixels."""
    image, truths, ratio, pad = render_frame(rng, polygons=True)
    masks = np.zeros((len(truths), PROTO, PROTO), dtype=np.uint8)
    for k, truth in enumerate(truths):
        full = fill(truth["points"], ratio, pad).astype(np.float32)
        masks[k] = (full.reshape(PROTO, PROTO_STRIDE, PROTO, PROTO_STRIDE).mean((1, 3)) + 0.5).astype(np.uint8)
    return image, truth_boxes(truths, ratio, pad), masks


def flip_seg(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detector's random flips (the same two draws), applied to the masks too."""
    state = rng.bit_generator.state
    flipped_image, flipped_boxes = flip(image, boxes, rng)
    after = rng.bit_generator.state
    rng.bit_generator.state = state
    if rng.random() < 0.5:
        masks = masks[:, :, ::-1]
    if rng.random() < 0.5:
        masks = masks[:, ::-1, :]
    rng.bit_generator.state = after
    return flipped_image, flipped_boxes, np.ascontiguousarray(masks)


# ------------------------------------------------------------------------------------------ loss


def mask_loss(coeffs: torch.Tensor, protos: torch.Tensor, assignment, masks: list[np.ndarray]) -> torch.Tensor:
    """Mean over positive cells of the box-cropped BCE of ``coeffs @ protos`` vs the ground-truth soft mask."""
    bi, ai, tbox, _, gi = assignment
    if not bi.numel():
        return coeffs.sum() * 0.0 + protos.sum() * 0.0
    centres = torch.arange(PROTO, dtype=torch.float32) + 0.5
    total = coeffs.new_zeros(())
    for b in range(protos.shape[0]):
        sel = (bi == b).nonzero().squeeze(1)
        if not sel.numel():
            continue
        logits = coeffs[b][:, ai[sel]].t() @ protos[b].flatten(1)  # [P, 6400]
        target = torch.from_numpy(masks[b]).float().div_(255.0)[gi[sel]].flatten(1)
        box = tbox[sel] / PROTO_STRIDE
        in_x = (centres[None, :] >= box[:, 0:1]) & (centres[None, :] <= box[:, 2:3])
        in_y = (centres[None, :] >= box[:, 1:2]) & (centres[None, :] <= box[:, 3:4])
        crop = (in_y[:, :, None] & in_x[:, None, :]).flatten(1).float()
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        total = total + ((bce * crop).sum(1) / crop.sum(1).clamp(min=1.0)).sum()
    return total / bi.numel()


def compute_loss(model: TinySegmenter, x: torch.Tensor, boxes: list[np.ndarray],
                 masks: list[np.ndarray]) -> tuple[torch.Tensor, dict]:
    """The mask loss on the detector's positive cells (the detector is frozen: no box or class loss)."""
    with torch.no_grad():
        s4, f = model.features(x)
    coeffs, protos = model.masks(s4, f)
    assignment = assign(model.anchors, boxes)
    loss = mask_loss(coeffs, protos, assignment, masks)
    return loss, {"mask": float(loss.detach()), "pos": max(int(assignment[0].numel()), 1)}


# ------------------------------------------------------------------------------------------ eval


def _paste(instance: dict) -> np.ndarray:
    """An instance's ``_mask`` (top, left, bool crop) on the full input canvas, flattened."""
    top, left, crop = instance["_mask"]
    canvas = np.zeros((IMGSZ, IMGSZ), dtype=np.float32)
    canvas[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return canvas.reshape(-1)


def mask_overlap(predictions: list[dict], truths: list[dict]) -> np.ndarray:
    """IoU of the input-resolution masks of one image's predictions and ground truths (for ``overlap=``)."""
    if not predictions or not truths:
        return np.zeros((len(predictions), len(truths)))
    a = np.stack([_paste(p) for p in predictions])
    b = np.stack([_paste(t) for t in truths])
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _crop(mask: np.ndarray) -> tuple[int, int, np.ndarray]:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return 0, 0, np.zeros((0, 0), dtype=bool)
    return int(ys.min()), int(xs.min()), mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def decode_item(out0: torch.Tensor, protos: torch.Tensor, conf: float, ratio: float, pad: tuple[float, float],
                size: tuple[int, int], max_det: int = 100) -> list[dict]:
    """One image's detections (original pixels) with their masks (``_mask``, input pixels), best first."""
    rows = out0.t()  # [A, 39]
    scores = rows[:, 4:4 + NUM_CLASSES]
    confidence, class_id = scores.max(1)
    sel = (confidence >= conf).nonzero().squeeze(1)
    if not sel.numel():
        return []
    xywh = rows[sel, :4].double()
    xyxy = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1).numpy()
    keep = nms(xyxy, confidence[sel].numpy(), 0.5, class_id[sel].numpy())[:max_det]
    sel, xyxy = sel[keep], xyxy[keep]
    coeffs = rows[sel, 4 + NUM_CLASSES:]
    probs = (coeffs @ protos.flatten(1)).sigmoid().view(-1, 1, PROTO, PROTO)
    probs = F.interpolate(probs, size=(IMGSZ, IMGSZ), mode="bilinear", align_corners=False)[:, 0].numpy()
    centres = np.arange(IMGSZ) + 0.5
    width, height = size
    detections = []
    for k, (x1, y1, x2, y2) in enumerate(xyxy):
        in_x = (centres >= x1) & (centres <= x2)
        in_y = (centres >= y1) & (centres <= y2)
        mask = (probs[k] > 0.5) & in_y[:, None] & in_x[None, :]
        ox1, ox2 = np.clip([(x1 - pad[0]) / ratio, (x2 - pad[0]) / ratio], 0, width)
        oy1, oy2 = np.clip([(y1 - pad[1]) / ratio, (y2 - pad[1]) / ratio], 0, height)
        if ox2 <= ox1 or oy2 <= oy1:
            continue
        cid = int(class_id[sel[k]])
        detections.append({"x": (ox1 + ox2) / 2, "y": (oy1 + oy2) / 2, "width": ox2 - ox1, "height": oy2 - oy1,
                           "confidence": float(confidence[sel[k]]), "class": CLASS_NAMES[cid], "class_id": cid,
                           "_mask": _crop(mask)})
    return detections


@torch.no_grad()
def evaluate(model: TinySegmenter, frames, conf: float = 0.01) -> dict:
    """Box and mask mAP@0.5 (per class too) and the mean mask IoU of the ground-truth shapes."""
    model.eval()
    predictions, truths = [], []
    for start in range(0, len(frames), 16):
        chunk = frames[start:start + 16]
        out0, protos = model(torch.from_numpy(np.stack([f[0] for f in chunk])))
        for k, (_, ratio, pad, size, frame_truths) in enumerate(chunk):
            predictions.append(decode_item(out0[k], protos[k], conf, ratio, pad, size))
            truths.append([{**t, "_mask": _crop(fill(t["points"], ratio, pad) > 0)} for t in frame_truths])
    model.train()
    best = []
    for preds, image_truths in zip(predictions, truths):
        for name in CLASS_NAMES:
            theirs = [t for t in image_truths if t["class"] == name]
            mine = [p for p in preds if p["class"] == name and p["confidence"] >= 0.25]
            if theirs:
                ious = mask_overlap(mine, theirs)
                best.extend(ious.max(0) if len(mine) else np.zeros(len(theirs)))
    return {
        "box_map": mean_average_precision(predictions, truths),
        "mask_map": mean_average_precision(predictions, truths, overlap=mask_overlap),
        "mask_per_class": per_class_average_precision(predictions, truths, overlap=mask_overlap),
        "mean_mask_iou": float(np.mean(best)) if best else math.nan,
        "shapes": len(best),
    }


def _summary(result: dict) -> str:
    per_class = " ".join(f"{k} {v:.3f}" for k, v in result["mask_per_class"].items())
    return (f"box mAP@0.5 {result['box_map']:.4f} mask mAP@0.5 {result['mask_map']:.4f} ({per_class}) "
            f"mean mask IoU {result['mean_mask_iou']:.4f} of {result['shapes']} shapes")


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "alpolicy_onnx" / "models" / "demo-shapes-seg.onnx")
    parser.add_argument("--detector", type=Path, default=DETECTOR, help="the trained detector to build on")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--val-frames", type=int, default=200)
    parser.add_argument("--checkpoint", type=Path, default=None, help="save the torch weights here too")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = TinySegmenter()
    loaded = load_detector(model, args.detector)
    difference = check_detector(model, args.detector)
    if difference > 1e-3:
        raise SystemExit(f"the rebuilt detector differs from {args.detector.name} by {difference}")
    model = model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    trained = [p for p in model.parameters() if p.requires_grad]
    print(f"model: {n_params} parameters, {sum(p.numel() for p in trained)} trained; {loaded} convolutions "
          f"from {args.detector.name} (outputs within {difference:.1e} of it); torch {torch.__version__}", flush=True)
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=5e-4)
    warmup = 100

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    val = make_val(args.val_frames, polygons=True)
    batcher = Batcher(rng, args.batch, render=render_seg_sample, flip=flip_seg)
    started = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        x, boxes, masks = batcher.next()
        x = x.contiguous(memory_format=torch.channels_last)
        loss, parts = compute_loss(model, x, boxes, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 10.0)
        optimizer.step()
        for key, value in parts.items():
            running[key] = running.get(key, value) * 0.98 + value * 0.02
        if (step + 1) % 100 == 0:
            elapsed = time.perf_counter() - started
            print(f"step {step + 1}/{args.steps} loss mask {running['mask']:.4f} pos {running['pos']:.0f} lr {lr_at(step):.2e} "
                  f"elapsed {elapsed / 60:.1f} min (rendering {batcher.render_seconds / 60:.1f} min)", flush=True)
        if (step + 1) % args.eval_every == 0 and step + 1 != args.steps:
            print(f"  val clean {_summary(evaluate(model, val))}", flush=True)
            if args.checkpoint:
                torch.save(model.state_dict(), args.checkpoint)
    train_seconds = time.perf_counter() - started
    if args.checkpoint:
        torch.save(model.state_dict(), args.checkpoint)
    clean = evaluate(model, val)
    hard = evaluate(model, make_val(100, seed=VAL_SEED + 1, hard=True, polygons=True))
    description = (f"alpolicy demo instance segmentation: circles, squares, triangles on synthetic frames; "
                   f"{n_params} parameters, the demo detector plus a mask head trained {args.steps} steps x batch "
                   f"{args.batch}, seed {args.seed}")
    export(model, args.out, description, task="segment",
           outputs={"output0": [4 + NUM_CLASSES + N_MASKS, GRID * GRID], "output1": [N_MASKS, PROTO, PROTO]},
           producer="train_demo_segmenter.py")
    print(f"trained {args.steps} steps in {train_seconds / 60:.1f} min (1 thread, rendering "
          f"{batcher.render_seconds / 60:.1f} min), {(time.perf_counter() - started) / 60:.1f} min with validation "
          f"and export", flush=True)
    print(f"val clean (seed {VAL_SEED}, {len(val)} frames): {_summary(clean)}", flush=True)
    print(f"val hard (seed {VAL_SEED + 1}, 100 frames): {_summary(hard)}", flush=True)
    print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.2f} MB); stride {STRIDE} boxes, "
          f"stride {PROTO_STRIDE} prototypes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
