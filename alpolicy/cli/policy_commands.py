"""Sub-commands about policies and plugins: validate, explain, rules, plugins, options, schema."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .. import plugin_options
from ..errors import PolicyError, UsageError
from ..plugins import get_registry
from ..policy.engine import Policy
from ..policy.policy_json import loads as load_policy_json
from ..io.jsonsafe import JsonError, loads as load_json
from ..policy.prediction import TASKS, Prediction, PredictionFormatError
from ..policy.validation import composed_schema
from ..registry import Stage, did_you_mean


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter

    validate = subparsers.add_parser(
        "validate",
        help="check policy files and print every problem",
        description="Check policy files (or SDK conditionals JSON with --conditionals). "
        "Exit 0 when all are valid, 2 otherwise; every problem is printed with its JSON path.",
        epilog="example:\n  alpolicy validate policies/*.json",
        formatter_class=raw,
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="policy JSON file(s)")
    validate.add_argument(
        "--conditionals", action="store_true", help="the files hold Roboflow SDK conditionals dicts, not policies"
    )
    validate.add_argument("--task", choices=TASKS, metavar="TASK",
                          help="also check that every rule applies to models of TASK (one of: " + ", ".join(TASKS) + ")")
    validate.set_defaults(handler=cmd_validate)

    explain = subparsers.add_parser(
        "explain",
        help="show the decision for one prediction, with reasons",
        description="Evaluate POLICY on one prediction in the Roboflow inference JSON shape "
        '({"image": {"width", "height"}, "predictions": [...]}) and say why the image would or '
        "would not be sent. Exit 0 when it qualifies, 1 when it does not, 2 when it cannot be "
        "decided (a bad file, or a rule whose code raises: a plugin bug, named in one line).",
        epilog="example:\n  alpolicy explain policy.json frame_0001.json\n"
        "  alpolicy explain --conditionals '{\"target_classes\": [\"car\"]}' frame_0001.json",
        formatter_class=raw,
    )
    explain.add_argument("policy", metavar="POLICY", nargs="?", help="policy JSON file")
    explain.add_argument("prediction", metavar="PREDICTION", help="prediction JSON file (- for stdin)")
    explain.add_argument("--conditionals", metavar="JSON", help="use SDK conditionals (a JSON object) instead of a policy file")
    explain.add_argument("--json", action="store_true", help="print the decision as JSON")
    explain.add_argument("--task", choices=TASKS, metavar="TASK",
                         help="the model's task (as `alpolicy run` knows it from the backend): the prediction is read "
                         "as one of TASK and a policy with a rule that cannot judge TASK is refused (exit 2)")
    explain.set_defaults(handler=cmd_explain)

    rules = subparsers.add_parser(
        "rules",
        help="list the rules a policy can use",
        description="List every registered rule with its stage and one-line description, and the task "
        "types it is limited to (box_area: not classification); --json gives each rule's `tasks`.",
    )
    rules.add_argument("--json", action="store_true", help="print JSON, including each rule's parameter schema")
    rules.set_defaults(handler=cmd_rules)

    plugins = subparsers.add_parser(
        "plugins",
        help="list installed plugins and what they register",
        description="List loaded plugins (built-in and installed through the `alpolicy` entry point "
        "group) with their versions and what each registers. ALPOLICY_LOAD_PLUGINS=a,b restricts "
        "loading to the named plugins; an empty value loads none.",
    )
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(handler=cmd_plugins)

    options = subparsers.add_parser(
        "options",
        help="list the options of each inference backend and destination",
        description="List the options each inference backend (--model-opt KEY=VALUE) and destination "
        "(--to-opt KEY=VALUE) of `alpolicy run` declares, one line each: name, values, description. "
        "A plugin written for alpolicy 0.1 declares none: its options are passed on unchecked.",
        epilog="examples:\n  alpolicy options            every backend and destination\n"
        "  alpolicy options onnx       the onnx backend's\n  alpolicy options folder --json",
        formatter_class=raw,
    )
    options.add_argument("scheme", metavar="SCHEME", nargs="?", help="only this backend's or destination's (e.g. onnx, folder)")
    options.add_argument("--json", action="store_true", help="print JSON, including each options schema")
    options.set_defaults(handler=cmd_options)

    schema = subparsers.add_parser(
        "schema",
        help="print the policy JSON Schema (for editors)",
        description="Print the policy JSON Schema (Draft 2020-12) composed with the schema of every "
        "installed rule, as one bundled document. Point your editor at it, or add "
        '"$schema" to your policy files.',
    )
    schema.set_defaults(handler=cmd_schema)


def _read_text(path: str, what: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} file {path!r} does not exist") from None
    except OSError as error:
        raise UsageError(f"cannot read {what} file {path!r}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{what} file {path!r} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def _read_json(path: str, what: str, *, policy: bool = False) -> Any:
    """A JSON file (``-``: stdin); ``policy``: read by the strict policy reader (duplicate keys,
    NaN, huge integers and nesting past the limits are a :class:`PolicyError`)."""
    text = _read_text(path, what)
    try:
        return load_policy_json(text, path) if policy else json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(f"{what} file {path!r} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        try:
            if args.conditionals:
                document = _read_json(path, "conditionals", policy=True)
                policy = Policy.from_conditionals(document)
            else:
                policy = Policy.from_file(path)
            policy.check_task(args.task)
        except PolicyError as error:
            failed += 1
            print(f"{path}: {len(error.problems)} problem{'s' if len(error.problems) != 1 else ''}", file=sys.stderr)
            for problem in error.problems:
                print(f"  {problem}", file=sys.stderr)
        except UsageError as error:
            failed += 1
            print(f"{path}: {error}", file=sys.stderr)
        else:
            print(f"{path}: ok")
    return 2 if failed else 0


def load_policy_argument(policy_path: str | None, conditionals: str | None) -> Policy:
    """The policy named on a command line: a file, or an inline conditionals JSON object."""
    if conditionals is not None and policy_path is not None:
        raise UsageError(f"give either a policy file ({policy_path}) or --conditionals, not both")
    if conditionals is not None:
        try:
            document = load_policy_json(conditionals, "--conditionals")
        except json.JSONDecodeError as error:
            raise UsageError(f"--conditionals is not valid JSON: {error.msg} at column {error.colno}") from None
        return Policy.from_conditionals(document)
    if policy_path is None:
        raise UsageError("give a policy file or --conditionals JSON")
    if not os.path.exists(policy_path):  # a wrong path, not a policy with a problem: one line
        raise UsageError(f"the policy file {policy_path!r} does not exist")
    if os.path.isdir(policy_path):
        raise UsageError(f"the policy file {policy_path!r} is a folder")
    return Policy.from_file(policy_path)


def cmd_explain(args: argparse.Namespace) -> int:
    policy = load_policy_argument(args.policy, args.conditionals)
    policy.check_task(args.task)
    try:
        document = load_json(_read_text(args.prediction, "prediction"), finite=False)
        prediction = Prediction.from_json(document, check=True, task=args.task)
    except (JsonError, PredictionFormatError) as error:
        raise UsageError(f"{args.prediction}: {error}") from None
    decision = policy.evaluate(prediction)
    verdicts = decision.verdicts  # before printing anything: a rule whose explain() crashes is one line, exit 2
    if args.json:
        print(json.dumps(decision.to_json(), indent=2, ensure_ascii=False))
    else:
        verdict = "QUALIFIES: would be sent for labeling" if decision.qualifies else (
            f"REJECTED by {decision.rejected_by}: would not be sent"
        )
        print(verdict)
        for item in verdicts:
            print(f"  {'✓' if item.passed else '✗'} {item.rule}: {item.reason}")
        if decision.tags:
            print(f"  tags: {', '.join(decision.tags)}")
    return 0 if decision.qualifies else 1


def cmd_rules(args: argparse.Namespace) -> int:
    registry = get_registry()
    ordered = [spec for stage in Stage for spec in registry.rules_of(stage)]
    if args.json:
        print(json.dumps(
            [
                {"name": s.name, "stage": s.stage.value, "summary": s.summary, "plugin": s.plugin,
                 "tasks": [task for task in TASKS if s.applies_to(task)], "schema": s.schema}
                for s in ordered
            ],
            indent=2,
            ensure_ascii=False,
        ))
        return 0
    width = max((len(spec.name) for spec in ordered), default=4)
    for stage in Stage:
        specs = registry.rules_of(stage)
        print(f"{stage.value} rules:")
        if not specs:
            print("  (none installed)")
        for spec in specs:
            only = f" [{', '.join(task for task in TASKS if spec.applies_to(task))} only]" if spec.tasks is not None else ""
            print(f"  {spec.name:<{width}}  {spec.summary}{only}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = get_registry()
    infos = [info.to_json() for info in registry.plugins.values()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    for info in infos:
        version = f" {info['version']}" if info["version"] else ""
        source = f" ({info['distribution']}{version})" if info["distribution"] else ""
        provides = [
            f"{kind}: {', '.join(items)}"
            for kind, items in (
                ("rules", info["rules"]),
                ("inference backends", info["inference_backends"]),
                ("destinations", info["destinations"]),
                ("sources", info["sources"]),
                ("executors", info["executors"]),
                ("embedders", info["embedders"]),
            )
            if items
        ]
        print(f"{info['name']}{source}")
        print(f"  {'; '.join(provides) if provides else 'registers nothing'}")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    registry = get_registry()
    tables = (("inference backends", "--model-opt", registry.backends), ("destinations", "--to-opt", registry.destinations))
    if args.scheme is not None and not any(args.scheme in table for _, _, table in tables):
        known = sorted({scheme for _, _, table in tables for scheme in table})
        raise UsageError(f"no inference backend or destination {args.scheme!r}{did_you_mean(args.scheme, known)}; "
                         f"installed: {', '.join(known)}")
    chosen = [(title, flag, [spec for scheme, spec in sorted(table.items()) if args.scheme in (None, scheme)])
              for title, flag, table in tables]
    if args.json:
        print(json.dumps(
            {title.replace(" ", "_"): [{"scheme": spec.scheme, "plugin": spec.plugin, "options_schema": spec.options_schema}
                                       for spec in specs] for title, _, specs in chosen},
            indent=2, ensure_ascii=False,
        ))
        return 0
    for title, flag, specs in chosen:
        if not specs:
            continue
        print(f"{title} ({flag} KEY=VALUE):")
        for spec in specs:
            print(f"  {spec.scheme} (plugin {spec.plugin})")
            rows = plugin_options.describe(spec.options_schema)
            if spec.options_schema is None:
                print("    (options not declared: passed on unchecked)")
            elif not rows:
                print("    (no options)")
            name_width = max((len(name) for name, _, _ in rows), default=0)
            type_width = max((len(kind) for _, kind, _ in rows), default=0)
            for name, kind, text in rows:
                print(f"    {name:<{name_width}}  {kind:<{type_width}}  {text}".rstrip())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(composed_schema(get_registry()), indent=2, ensure_ascii=False))
    return 0
