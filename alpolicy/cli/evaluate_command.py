"""``alpolicy evaluate``: how many of the model's errors each policy puts in front of a labeler,
measured against a ground truth on the predictions a journal stores (no model call)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..evaluation.evaluate import check_budget, check_iou, evaluate, load_policy
from ..io.images import display_path
from ..report.evaluation import write_evaluation_report

DESCRIPTION = """\
Decide every image that has a stored prediction in JOURNAL and an entry in the COCO ground truth
(matched by file name) under each policy, with no model call, and count the model's errors the
policy's picks hold, against picking the same number of images at random and the best possible
pick (the oracle)."""

EPILOG = """\
what the numbers mean:
  errors     per image: the unmatched predictions plus the unmatched ground-truth objects.
             Predictions are matched to truths of their class greedily, by descending confidence,
             at IoU >= --iou (box IoU; mask IoU of the polygons for segmentation; OKS for
             keypoints). An unmatched prediction and an unmatched truth of another class that
             overlap at >= --iou form a wrong-class pair; the rest are misses (truths) and false
             positives (predictions), so
                 errors == miss + false_positive + 2 x wrong_class
             Classification: a wrong top class is a wrong-class pair; multi-label: every class
             predicted but not true is a false positive, every true class not predicted a miss.
  picked     the images the policy sends (its image rules, then its sampling rules, replayed on
             a scratch ledger: nothing is charged); with --budget K its K highest-priority picks
             (Decision.score; none last), ties in stream order.
  captured   the errors in the picked images (K = picked).
  random     K / N x the errors of all N evaluated images: what K random images hold on average;
             ± the standard deviation over 1000 seeded draws (seed 0; --json adds p05 and p95).
  oracle     the errors in the K images that hold the most.
  efficiency (captured - random) / (oracle - random): 0 is no better than random, 1 the oracle;
             "-" (null) when oracle == random.

examples:
  alpolicy evaluate --ground-truth gt.coco.json --journal .alpolicy/journal.sqlite --policy policy.json
  alpolicy evaluate --ground-truth gt.coco.json --journal j.sqlite --policy a.json --policy b.json --budget 50
  alpolicy evaluate ... --json > evaluation.json          every count, per kind, per class, per image
"""


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="measure policies against ground truth: errors captured vs random and oracle",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ground-truth", required=True, metavar="GT.coco.json",
                        help="the ground truth, a COCO dataset (images matched by file name)")
    parser.add_argument("--journal", required=True, metavar="J", help="the run journal whose stored predictions are evaluated")
    parser.add_argument("--policy", required=True, action="append", metavar="P",
                        help="a policy file; repeat for several")
    parser.add_argument("--budget", type=int, metavar="K", help="each policy sends at most its K highest-priority picks")
    parser.add_argument("--iou", type=float, default=0.5, metavar="IOU",
                        help="the overlap a match needs, in (0, 1] (default 0.5; OKS for keypoints)")
    parser.add_argument("--json", action="store_true", help="print the whole evaluation as JSON")
    parser.add_argument("--report", metavar="DIR",
                        help="also write DIR/evaluation.html: a bar per policy between random picks and the oracle, "
                             "the picked images with their errors drawn (linked from DIR/index.html when a run report is there)")
    parser.set_defaults(handler=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    check_iou(args.iou)  # the flags first: a typo costs no reading
    check_budget(args.budget)
    policies = [(path, load_policy(path)) for path in args.policy]
    document = evaluate(args.ground_truth, args.journal, policies, budget=args.budget, iou=args.iou)
    print(json.dumps(document, indent=2) if args.json else summary(document))
    if args.report:
        page = write_evaluation_report(document, args.journal, args.report)
        print(f"report: {display_path(str(page))}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _efficiency(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def summary(document: dict[str, Any]) -> str:
    """The table ``alpolicy evaluate`` prints: one row per policy."""
    kinds = document["errors_total_by_kind"]
    skipped = ", ".join(f"{count} {why}" for why, count in document["skipped"].items() if count)
    lines = [f"{document['evaluated']} images evaluated (IoU >= {document['iou']:g}"
             + (f", budget {document['budget']}" if document["budget"] is not None else "") + "): "
             f"{document['errors_total']} errors = {kinds['miss']} misses + {kinds['false_positive']} false positives"
             f" + 2 x {kinds['wrong_class']} wrong-class pairs" + (f"; skipped: {skipped}" if skipped else "")]
    rows = [("policy", "picked", "captured", "random ± std", "oracle", "efficiency")]
    for outcome in document["policies"]:
        rows.append((outcome["policy"], str(outcome["picked"]), str(outcome["errors_captured"]),
                     f"{outcome['random_mean']:.1f} ± {outcome['random_spread']['std']:.1f}", str(outcome["oracle"]),
                     _efficiency(outcome["efficiency"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)
