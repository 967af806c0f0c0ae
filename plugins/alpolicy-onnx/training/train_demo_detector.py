"""Train the tiny demo detector shipped as ``alpolicy_onnx/models/demo-shapes.onnx`` and export it.

Run (from ``plugins/alpolicy-onnx``, in an environment with torch 2.13 CPU, numpy, Pillow, onnx,
onnxruntime)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python training/train_demo_detector.py \
        --out alpolicy_onnx/models/demo-shapes.onnx

Everything is generated; nothing is downloaded.

Data
    Frames from :func:`alpolicy_onnx.synthetic.random_scene`, rendered on the fly from one
    ``numpy.random.default_rng(seed)`` stream (``--seed``, default 0), 35 % of them ``hard=True``.
    Frame sizes vary (640x480 most often, also 480x640, 640x360, 512x512, 400x300, 320x240); half
    are JPEG re-encoded (quality 60-95), as footage is. Each is letterboxed to 320x320 with
    :func:`alpolicy_onnx.decode.letterbox`, exactly as at inference. Each batch of 8 is 4 new
    frames plus 4 drawn from a buffer of the last 2048, and every frame is randomly flipped
    horizontally and/or vertically (this halves the cost of rendering). Validation uses 200 clean
    640x480 frames of seed 999 and 100 hard ones of seed 1000 (the shipped-model test uses seeds
    424242 and 424243; none of these streams is the training one).

Model (252,583 parameters; the ONNX file is 1.04 MB)
    A plain conv net with batch norm and SiLU: 3x3 convs down to stride 8 (16, 32, 48 channels)
    and stride 16 (64 channels), the stride-16 map upsampled and concatenated to the stride-8 one
    (a one-level FPN), then a shared 3x3 conv and two 1x1/3x3 heads. One prediction per stride-8
    cell (40 x 40 = 1600 anchors), anchor-free: 3 class logits and 4 distances (left, top, right,
    bottom = softplus x 8 px) from the cell centre.

Training
    Centre-sampling assignment (FCOS-like): a cell is positive for a box when its centre lies
    inside the box and within 2.5 cells of the box centre (the cell under the centre always is);
    ties go to the smaller box. Quality focal loss: the class target of a positive cell is the
    IoU of its predicted box with its ground truth (so scores estimate localisation quality and
    are lower on hard frames), 0 elsewhere; plus 2 x GIoU loss on positive cells. AdamW (lr 2e-3,
    weight decay 5e-4), 300 warm-up steps then cosine decay to 2 %, batch 8, ``--steps`` (default 7000,
    i.e. 56,000 frames seen, 28,000 of them rendered).

Export
    ONNX opset 17, legacy TorchScript exporter, input ``images`` ``[batch, 3, 320, 320]`` (RGB,
    0..1, dynamic batch), one output ``output0`` ``[batch, 7, 1600]`` in the YOLOv8 layout: ``cx, cy,
    w, h`` in input pixels then the 3 class sigmoid scores. Ultralytics-style metadata: ``names``,
    ``imgsz``, ``stride``, ``task``, ``description``, ``author``, ``version``.

Measured on the 2-core development machine with ``torch.set_num_threads(1)``, in the run that
produced the shipped file (a run prints these at its end):

* 7000 steps x batch 8 (seed 0) took 35.4 min of training (6.0 min of it rendering frames), plus
  about 1.5 min of validation and export: 37 min in all, with torch 2.13.0+cpu on one thread while
  the machine's other core was busy with other work.
* Validation mAP@0.5 on clean frames after 1000, 2000, ... 7000 steps: 0.797, 0.891, 0.919,
  0.932, 0.942, 0.948, 0.950 (triangle 0.927, circle 0.948, square 0.976); on hard frames: 0.879.
* 15 % of the detections on hard frames with confidence >= 0.1 lie between 0.3 and 0.7.
* ONNX Runtime 1.32, one thread: about 190 images/s for the session alone, about 120 images/s
  for letterbox + session + decode of 640x480 JPEG frames.
* The data stream is deterministic for a seed; the run was not repeated, so whether a rerun gives
  the same bytes (rather than a model of the same quality) is unchecked.
"""

from __future__ import annotations

import argparse
import io
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
from PIL import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from alpolicy_onnx.decode import decode, letterbox  # noqa: E402
from alpolicy_onnx.metrics import mean_average_precision, per_class_average_precision  # noqa: E402
from alpolicy_onnx.synthetic import CLASS_NAMES, random_scene  # noqa: E402

IMGSZ = 320
STRIDE = 8
GRID = IMGSZ // STRIDE
NUM_CLASSES = len(CLASS_NAMES)
SIZES = [((640, 480), 0.45), ((480, 640), 0.1), ((640, 360), 0.1), ((512, 512), 0.1), ((400, 300), 0.15),
         ((320, 240), 0.1)]
VAL_SEED = 999


def conv(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True))


class TinyDetector(nn.Module):
    """Anchor-free single-level detector; ``forward`` returns ``[batch, 4 + classes, anchors]`` (YOLOv8 layout)."""

    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 48):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(conv(3, 16, 3, 2), conv(16, 32, 3, 2), conv(32, 32))  # stride 4
        self.p3 = nn.Sequential(conv(32, width, 3, 2), conv(width, width))  # stride 8
        self.p4 = nn.Sequential(conv(width, 64, 3, 2), conv(64, 64), conv(64, 64))  # stride 16
        self.fuse = nn.Sequential(conv(width + 64, 64, 1), conv(64, 64))
        self.cls_head = nn.Sequential(conv(64, 48), nn.Conv2d(48, num_classes, 1))
        self.box_head = nn.Sequential(conv(64, 48), nn.Conv2d(48, 4, 3, 1, 1))
        nn.init.constant_(self.cls_head[-1].bias, -4.6)  # prior 0.01
        nn.init.constant_(self.box_head[-1].bias, 1.0)
        ys, xs = torch.meshgrid(torch.arange(GRID, dtype=torch.float32), torch.arange(GRID, dtype=torch.float32),
                                indexing="ij")
        anchors = torch.stack([xs.reshape(-1), ys.reshape(-1)], 0) * STRIDE + STRIDE / 2  # [2, A]
        self.register_buffer("anchors", anchors, persistent=False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The stride-4 stem map ``[B, 32, 80, 80]`` and the fused stride-8 map ``[B, 64, 40, 40]``."""
        x = self.stem(x)
        p3 = self.p3(x)
        p4 = self.p4(p3)
        return x, self.fuse(torch.cat([p3, F.interpolate(p4, scale_factor=2.0, mode="nearest")], 1))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[B, C, A]`` and ltrb distances in input pixels ``[B, 4, A]`` from the fused map."""
        logits = self.cls_head(f).flatten(2)
        ltrb = F.softplus(self.box_head(f).flatten(2)) * STRIDE
        return logits, ltrb

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[B, C, A]`` and ltrb distances in input pixels ``[B, 4, A]``."""
        return self.heads(self.features(x)[1])

    def boxes(self, logits: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
        """``[B, 4 + C, A]``: cx, cy, w, h in input pixels, class scores (the YOLOv8 layout)."""
        lt, rb = ltrb[:, :2], ltrb[:, 2:]
        x1y1 = self.anchors - lt
        x2y2 = self.anchors + rb
        return torch.cat([(x1y1 + x2y2) / 2, x2y2 - x1y1, logits.sigmoid()], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.boxes(*self.raw(x))


# ------------------------------------------------------------------------------------------ data


def render_frame(rng: np.random.Generator, hard_p: float = 0.35, polygons: bool = False):
    """One random training frame, letterboxed: ``(uint8 [3, 320, 320], ground truth, ratio, (pad x, pad y))``."""
    sizes, weights = zip(*SIZES)
    size = sizes[int(rng.choice(len(sizes), p=np.array(weights) / sum(weights)))]
    image, truths = random_scene(rng, size, hard=bool(rng.random() < hard_p), polygons=polygons)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(60, 96)))
        buffer.seek(0)
        image = Image.open(buffer).convert("RGB")
    tensor, ratio, pad = letterbox(image, (IMGSZ, IMGSZ))
    return (tensor * 255.0 + 0.5).astype(np.uint8), truths, ratio, pad


def truth_boxes(truths: list[dict], ratio: float, pad: tuple[float, float]) -> np.ndarray:
    """Ground-truth boxes ``[n, 5]`` (x1, y1, x2, y2, class) in input pixels."""
    px, py = pad
    return np.array([[(t["x"] - t["width"] / 2) * ratio + px, (t["y"] - t["height"] / 2) * ratio + py,
                      (t["x"] + t["width"] / 2) * ratio + px, (t["y"] + t["height"] / 2) * ratio + py,
                      t["class_id"]] for t in truths], dtype=np.float32).reshape(-1, 5)


def render_sample(rng: np.random.Generator, hard_p: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """One letterboxed frame (uint8 ``[3, 320, 320]``) and its boxes ``[n, 5]`` (x1, y1, x2, y2, class) in input pixels."""
    image, truths, ratio, pad = render_frame(rng, hard_p)
    return image, truth_boxes(truths, ratio, pad)


def flip(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    boxes = boxes.copy()
    if rng.random() < 0.5:
        image = image[:, :, ::-1]
        boxes[:, [0, 2]] = IMGSZ - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        image = image[:, ::-1, :]
        boxes[:, [1, 3]] = IMGSZ - boxes[:, [3, 1]]
    return np.ascontiguousarray(image), boxes


class Batcher:
    """Batches of ``render(rng)`` samples (a tuple, the uint8 image first), half fresh, half from a buffer.

    ``flip(*sample, rng)`` augments each sample of a batch; :meth:`next` returns the stacked
    float images and, for every other part of the samples, the list of the batch's values.
    """

    def __init__(self, rng: np.random.Generator, batch: int, buffer_size: int = 2048,
                 render=render_sample, flip=flip):
        self.rng = rng
        self.render = render
        self.flip = flip
        self.batch = batch
        self.buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self.buffer_size = buffer_size
        self.cursor = 0
        self.render_seconds = 0.0

    def _fresh(self) -> tuple[np.ndarray, np.ndarray]:
        started = time.perf_counter()
        sample = self.render(self.rng)
        self.render_seconds += time.perf_counter() - started
        if len(self.buffer) < self.buffer_size:
            self.buffer.append(sample)
        else:
            self.buffer[self.cursor] = sample
            self.cursor = (self.cursor + 1) % self.buffer_size
        return sample

    def next(self) -> tuple:
        n_new = self.batch if len(self.buffer) < 4 * self.batch else self.batch // 2
        samples = [self._fresh() for _ in range(n_new)]
        while len(samples) < self.batch:
            samples.append(self.buffer[int(self.rng.integers(0, len(self.buffer)))])
        images, *rest = zip(*(self.flip(*sample, self.rng) for sample in samples))
        x = torch.from_numpy(np.stack(images)).float().div_(255.0)
        return (x, *(list(part) for part in rest))


# ------------------------------------------------------------------------------------------ loss


def box_iou_pairs(a: torch.Tensor, b: torch.Tensor, giou: bool = False) -> torch.Tensor:
    """IoU (or GIoU) of matching rows of ``[n, 4]`` x1y1x2y2 boxes."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    union = area_a + area_b - inter + 1e-7
    iou = inter / union
    if not giou:
        return iou
    enclose = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1) + 1e-7
    return iou - (enclose - union) / enclose


def assign(anchors: torch.Tensor, boxes: list[np.ndarray], radius: float = 2.5 * STRIDE):
    """Positive cells: (batch index, anchor index, target box [4], class, ground-truth index in its image) tensors."""
    ax, ay = anchors[0], anchors[1]  # [A]
    bi, ai, tb, tc, gi = [], [], [], [], []
    for b, gt in enumerate(boxes):
        if not len(gt):
            continue
        g = torch.from_numpy(gt)
        x1, y1, x2, y2 = (g[:, k][None, :] for k in range(4))  # [1, M]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        inside = (ax[:, None] > x1) & (ax[:, None] < x2) & (ay[:, None] > y1) & (ay[:, None] < y2)
        near = ((ax[:, None] - cx).abs() < radius) & ((ay[:, None] - cy).abs() < radius)
        cand = inside & near  # [A, M]
        centre_cell = (cy.clamp(0, IMGSZ - 1) // STRIDE).long() * GRID + (cx.clamp(0, IMGSZ - 1) // STRIDE).long()
        cand[centre_cell[0], torch.arange(g.shape[0])] = True
        area = ((x2 - x1) * (y2 - y1)).expand(cand.shape[0], -1)
        area = torch.where(cand, area, torch.full_like(area, float("inf")))
        best_area, best = area.min(1)
        pos = torch.isfinite(best_area)
        idx = pos.nonzero().squeeze(1)
        bi.append(torch.full_like(idx, b))
        ai.append(idx)
        tb.append(g[best[idx], :4])
        tc.append(g[best[idx], 4].long())
        gi.append(best[idx])
    if not bi:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0, 4), empty, empty
    return torch.cat(bi), torch.cat(ai), torch.cat(tb), torch.cat(tc), torch.cat(gi)


def compute_loss(model: TinyDetector, x: torch.Tensor, boxes: list[np.ndarray]) -> tuple[torch.Tensor, dict]:
    logits, ltrb = model.raw(x)  # [B, C, A], [B, 4, A]
    loss, parts, _ = detection_loss(model.anchors, logits, ltrb, boxes)
    return loss, parts


def detection_loss(anchors: torch.Tensor, logits: torch.Tensor, ltrb: torch.Tensor, boxes: list[np.ndarray]):
    """Quality focal + 2 x GIoU loss; returns ``(loss, parts, assignment)`` (the :func:`assign` tensors)."""
    assignment = assign(anchors, boxes)
    bi, ai, tbox, tcls, _ = assignment
    n_pos = max(int(bi.numel()), 1)
    anchors = anchors.t()[ai]  # [P, 2]
    d = ltrb[bi, :, ai]  # [P, 4]
    pbox = torch.cat([anchors - d[:, :2], anchors + d[:, 2:]], 1)
    target = torch.zeros_like(logits)
    if bi.numel():
        giou = box_iou_pairs(pbox, tbox, giou=True)
        loss_box = (1.0 - giou).sum() / n_pos
        with torch.no_grad():
            quality = box_iou_pairs(pbox, tbox).clamp(min=0.0)
        target[bi, tcls, ai] = quality
    else:
        loss_box = ltrb.sum() * 0.0
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss_cls = (bce * (prob - target).abs().pow(2.0)).sum() / n_pos
    loss = loss_cls + 2.0 * loss_box
    return loss, {"cls": float(loss_cls.detach()), "box": float(loss_box.detach()), "pos": n_pos}, assignment


# ------------------------------------------------------------------------------------------ eval


def make_val(n: int, seed: int = VAL_SEED, hard: bool = False, polygons: bool = False):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        image, truths = random_scene(rng, (640, 480), hard=hard, polygons=polygons)
        tensor, ratio, pad = letterbox(image, (IMGSZ, IMGSZ))
        frames.append((tensor, ratio, pad, image.size, truths))
    return frames


@torch.no_grad()
def evaluate(model: TinyDetector, frames, conf: float = 0.01) -> tuple[float, dict, np.ndarray]:
    model.eval()
    preds, truths, confs = [], [], []
    for start in range(0, len(frames), 32):
        chunk = frames[start:start + 32]
        out = model(torch.from_numpy(np.stack([f[0] for f in chunk]))).numpy()
        dets = decode(out, "yolov8", conf, 0.5, [f[1] for f in chunk], [f[2] for f in chunk],
                      [f[3] for f in chunk], names=list(CLASS_NAMES))
        preds.extend(dets)
        truths.extend(f[4] for f in chunk)
        confs.extend(d["confidence"] for ds in dets for d in ds)
    model.train()
    return mean_average_precision(preds, truths), per_class_average_precision(preds, truths), np.array(confs)


# ------------------------------------------------------------------------------------------ export


def export(model: nn.Module, path: Path, description: str, task: str = "detect",
           outputs: dict[str, list[int]] | None = None, producer: str = "train_demo_detector.py") -> None:
    """Export to ONNX with Ultralytics-style metadata; ``outputs`` = name -> its dimensions after the batch."""
    import onnx

    outputs = outputs or {"output0": [4 + NUM_CLASSES, GRID * GRID]}
    model = model.to(memory_format=torch.contiguous_format).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, IMGSZ, IMGSZ)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model, (dummy,), str(tmp), dynamo=False, opset_version=17, input_names=["images"],
        output_names=list(outputs), dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        do_constant_folding=True,
    )
    proto = onnx.load(str(tmp))
    tmp.unlink()
    meta = {
        "description": description,
        "author": "alpolicy",
        "version": "0.1.0",
        "task": task,
        "stride": str(STRIDE),
        "batch": "1",
        "imgsz": f"[{IMGSZ}, {IMGSZ}]",
        "names": repr({i: name for i, name in enumerate(CLASS_NAMES)}),
    }
    # the exporter leaves the channel dimension symbolic (it comes out of a Concat): pin it
    for output, sizes in zip(proto.graph.output, outputs.values()):
        dims = output.type.tensor_type.shape.dim
        for dim, size in zip(dims[1:], sizes):
            dim.Clear()
            dim.dim_value = size
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = f"alpolicy training/{producer}"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "alpolicy_onnx" / "models" / "demo-shapes.onnx")
    parser.add_argument("--steps", type=int, default=7000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--val-frames", type=int, default=200)
    parser.add_argument("--checkpoint", type=Path, default=None, help="save the torch weights here too")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = TinyDetector().to(memory_format=torch.channels_last)  # ~20 % faster on one CPU thread
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} parameters", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    warmup = 300

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))

    val = make_val(args.val_frames)
    batcher = Batcher(rng, args.batch)
    started = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        x, boxes = batcher.next()
        x = x.contiguous(memory_format=torch.channels_last)
        loss, parts = compute_loss(model, x, boxes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        for key, value in parts.items():
            running[key] = running.get(key, value) * 0.98 + value * 0.02
        if (step + 1) % 100 == 0:
            elapsed = time.perf_counter() - started
            print(f"step {step + 1}/{args.steps} loss cls {running['cls']:.4f} box {running['box']:.4f} "
                  f"pos {running['pos']:.0f} lr {lr_at(step):.2e} elapsed {elapsed / 60:.1f} min "
                  f"(rendering {batcher.render_seconds / 60:.1f} min)", flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            m, per_class, confs = evaluate(model, val)
            print(f"  val mAP@0.5 {m:.4f} " + " ".join(f"{k} {v:.3f}" for k, v in per_class.items()), flush=True)
            if args.checkpoint:
                torch.save(model.state_dict(), args.checkpoint)
    train_seconds = time.perf_counter() - started
    m, per_class, _ = evaluate(model, val)
    hard_m, _, hard_confs = evaluate(model, make_val(100, seed=VAL_SEED + 1, hard=True), conf=0.1)
    band = float(((hard_confs >= 0.3) & (hard_confs <= 0.7)).mean()) if hard_confs.size else 0.0
    description = (f"alpolicy demo detector: circles, squares, triangles on synthetic frames; "
                   f"{n_params} parameters, {args.steps} steps x batch {args.batch}, seed {args.seed}")
    export(model, args.out, description)
    print(f"trained {args.steps} steps in {train_seconds / 60:.1f} min (1 thread); "
          f"val clean mAP@0.5 {m:.4f}; val hard mAP@0.5 {hard_m:.4f}; "
          f"hard detections (conf >= 0.1) in 0.3-0.7: {band:.1%}; "
          f"exported {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
