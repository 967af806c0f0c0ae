"""The ``alpolicy`` command line: argparse sub-commands, one module per group.

User mistakes end in one ``alpolicy: error: ...`` line (exit 2) rather than a traceback; every
sub-command module exposes ``add_parsers(subparsers)`` and handler functions taking ``args``.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, Sequence

from ..errors import AlpolicyError, PolicyError
from . import evaluate_command, policy_commands, report_command, run_command

DESCRIPTION = """\
Decide which raw images deserve a labeler's time: run a detection model over a folder of
frames, evaluate a policy of rules, send the images that qualify (with their predictions as
pre-labels) to a labeling destination.
"""

EPILOG = """\
examples:
  alpolicy run frames/ --model roboflow:proj/3 --to roboflow:proj-al   triage a folder (SDK defaults)
  alpolicy validate policy.json              check a policy file, every problem with its JSON path
  alpolicy explain policy.json pred.json     why one image would (not) be sent
  alpolicy rules                             the rules you can use in a policy
  alpolicy plugins                           installed plugins and what they register
  alpolicy options [SCHEME]                  the --model-opt / --to-opt options of backends and destinations
  alpolicy schema > policy.schema.json       the policy JSON Schema, for your editor
  alpolicy report JOURNAL --out report/      an HTML page of the last run: funnel, charts, galleries
  alpolicy compare JOURNAL a.json b.json     what-if: which stored images each policy would send
  alpolicy evaluate --ground-truth gt.coco.json --journal J --policy P
                                             errors a policy's picks catch, vs random and the oracle

Run `alpolicy COMMAND --help` for the options of a command.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with its mistakes in the one-line form of every other user error.

    argparse prints the whole usage block and ``alpolicy run: error: ...``; alpolicy's errors are
    one ``alpolicy: error: ...`` line with exit status 2, whoever finds the mistake. The usage is
    one ``--help`` away, and the line says so. Sub-command parsers are made of this class too.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"alpolicy: error: {message} (see: {self.prog} --help)\n")

    def format_help(self) -> str:
        """The help, with an epilog that may be a function: made only when the help is shown (the
        installed plugins' schemes: loading plugins must not slow or break any other command)."""
        epilog = self.epilog
        if not callable(epilog):
            return super().format_help()
        self.epilog = epilog()
        try:
            return super().format_help()
        finally:
            self.epilog = epilog


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="alpolicy",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_command.add_parsers(subparsers)
    policy_commands.add_parsers(subparsers)
    report_command.add_parsers(subparsers)
    evaluate_command.add_parsers(subparsers)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except PolicyError as error:
        print(f"alpolicy: error: {error}", file=sys.stderr)
        return error.exit_code
    except AlpolicyError as error:
        print(f"alpolicy: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("alpolicy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `alpolicy rules | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
