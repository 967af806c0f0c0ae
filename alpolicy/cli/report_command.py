"""``alpolicy report`` (an HTML page of one run) and ``alpolicy compare`` (two policies on stored predictions)."""

from __future__ import annotations

import argparse
import json

from ..policy.engine import Policy
from ..report.html import write_run_report
from ..report.whatif import compare, write_comparison_report

REPORT_EPILOG = """\
examples:
  alpolicy report .alpolicy/journal.sqlite --out report/        the last run; open report/index.html
  alpolicy report demo-output/journal.sqlite --out r2/ --run 2  another run
"""

COMPARE_EPILOG = """\
examples:
  alpolicy compare .alpolicy/journal.sqlite policy.json stricter.json
  alpolicy compare journal.sqlite a.json b.json --report whatif/   galleries of the differences

Only the detection and image stages are evaluated; sampling rules (budgets, top_k, balance,
random strategies, near-duplicates) depend on a run's order, clock or pixels and are not applied.
"""


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="write a static HTML report of a run (funnel, charts, galleries, policy)",
        description="Write DIR/index.html and DIR/thumbs/ for a run recorded in JOURNAL: the funnel from images "
        "seen to images sent, charts of the detections with the policy's bounds, the chosen images with their "
        "boxes and reasons, a sample of rejected images, the policy. Opens from file://, no server.",
        epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("journal", metavar="JOURNAL", help="the run journal (SQLite), e.g. .alpolicy/journal.sqlite")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and thumbs/")
    report.add_argument("--run", type=int, metavar="N", help="run id (default: the last run)")
    report.set_defaults(handler=cmd_report)

    what_if = subparsers.add_parser(
        "compare", help="what-if: which stored images would two policies send?",
        description="Re-evaluate every prediction stored in JOURNAL under POLICY_A and POLICY_B (no model call, "
        "no image decoded) and print how many images each would send and how they overlap.",
        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what_if.add_argument("journal", metavar="JOURNAL", help="the run journal (SQLite)")
    what_if.add_argument("policy_a", metavar="POLICY_A", help="policy JSON file")
    what_if.add_argument("policy_b", metavar="POLICY_B", help="policy JSON file")
    what_if.add_argument("--model", metavar="SPEC", help="whose predictions (needed when the journal holds several models)")
    what_if.add_argument("--report", metavar="DIR", help="also write DIR/index.html with galleries of the differences")
    what_if.add_argument("--json", action="store_true", help="print the counts as JSON")
    what_if.set_defaults(handler=cmd_compare)


def cmd_report(args: argparse.Namespace) -> int:
    page = write_run_report(args.journal, args.out, args.run)
    print(f"report: {page}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    policy_a, policy_b = Policy.from_file(args.policy_a), Policy.from_file(args.policy_b)
    comparison = compare(args.journal, policy_a, policy_b, model=args.model)
    if args.json:
        print(json.dumps({
            "images": comparison.images, "model": comparison.model, "a_sends": comparison.a_sends,
            "b_sends": comparison.b_sends, "both": comparison.both, "a_only": len(comparison.a_only),
            "b_only": len(comparison.b_only), "sampling_not_applied": comparison.skipped_sampling,
            "seconds": round(comparison.elapsed, 3),
        }, indent=2))
    else:
        print(comparison.summary(args.policy_a, args.policy_b))
    if args.report:
        page = write_comparison_report(args.journal, comparison, policy_a, policy_b, args.report,
                                       labels=(args.policy_a, args.policy_b))
        print(f"report: {page}")
    return 0
