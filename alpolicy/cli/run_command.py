"""``alpolicy run``: triage a source of images with a model and a policy, send what qualifies.

``alpolicy run --help`` lists the installed schemes of every kind (sources, models,
destinations) with their one-line summaries, read from the registry when the help is shown.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from .. import plugin_options
from ..backends import ModelOptions
from ..destinations import DestinationOptions
from ..errors import UsageError
from ..io.checks import argument, cleartext_secret, number, service_url, whole_number
from ..io.images import normalise_extensions
from ..io.jsonsafe import DEFAULT_MAX_BYTES
from ..plugins import get_registry
from ..policy.engine import Policy
from ..policy.prediction import MAX_DETECTIONS
from ..report.html import write_run_report
from ..runtime.pipeline import (DEFAULT_CONCURRENCY, DEFAULT_JOURNAL, DEFAULT_RETRY_FOR, RunOptions,
                                check_source_options, choose_source, run)
from .policy_commands import load_policy_argument

EPILOG = """\
examples:
  # the SDK's active_learning(), concurrent and resumable (key from ROBOFLOW_API_KEY)
  alpolicy run frames/ --model roboflow:vehicles/3 --to roboflow:vehicles-al \\
      --conditionals '{"confidence_interval": [30, 60]}'

  # a local Inference server, a policy file, a dry run first
  alpolicy run frames/ --model roboflow:vehicles/3 --inference-url http://localhost:9001 \\
      --policy policy.json --to roboflow:vehicles-al --dry-run

  # your own YOLOv8 / YOLO11 / YOLOv5 ONNX export on the CPU (pip install plugins/alpolicy-onnx)
  alpolicy run frames/ --model onnx:yolov8n.onnx --confidence 25 --policy policy.json --to folder:queue/

  # predictions you already have, into a folder (COCO + Label Studio tasks)
  alpolicy run frames/ --model replay:predictions/ --policy policy.json --to folder:queue/

  # re-triage with a new policy from the journal's stored predictions (no model call)
  alpolicy run frames/ --reuse-predictions --policy stricter.json --to folder:queue2/

Interrupt with Ctrl-C at any time and run the same command again: finished images are skipped
and nothing is uploaded twice. Exit status: 0 done, 1 some images failed or stayed pending,
2 usage or policy error.
"""


def installed_schemes() -> str:
    """The epilog's lists of installed sources, models and destinations, each scheme with its
    one-line summary, from the registry (a plugin that fails to load is one line here too)."""
    from ..errors import AlpolicyError
    from ..plugins import get_registry

    try:
        registry = get_registry()
    except AlpolicyError as error:
        return f"installed schemes: unknown, the plugins did not load: {error}\n"
    sections = [("installed sources (SOURCE: a path, or SCHEME:TARGET)", registry.sources),
                ("installed models (--model SCHEME:TARGET)", registry.backends),
                ("installed destinations (--to SCHEME:TARGET)", registry.destinations),
                ("installed executors (--executor SPEC)", registry.executors)]
    lines: list[str] = []
    for title, table in sections:
        width = max((len(scheme) for scheme in table), default=0)
        lines.append(f"{title}:")
        lines += [f"  {scheme:<{width}}  {spec.summary}" for scheme, spec in sorted(table.items())] or ["  (none)"]
        lines.append("")
    return "\n".join(lines)


def run_epilog() -> str:
    return f"{installed_schemes()}\n{EPILOG}"


def plugin_option(example: str) -> Callable[[str], tuple[str, Any]]:
    """``--model-opt``/``--to-opt KEY=VALUE`` as ``(key, value)``, VALUE read as JSON when it parses;
    the chosen plugin's ``options_schema`` checks both (:mod:`alpolicy.plugin_options`)."""

    def parse(text: str) -> tuple[str, Any]:
        try:
            return plugin_options.parse_assignment(text, example)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="triage a folder: infer, decide, send what qualifies",
        description="Run a detection model over the images of SOURCE, evaluate a policy on each "
        "prediction, and send the images that qualify, with their predictions as pre-labels, to "
        "a destination. Progress goes to stderr, the summary to stdout, every decision to a "
        "JSON-lines log.",
        epilog=run_epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="a folder of images, or SCHEME:TARGET of an installed source (listed below)")
    what = parser.add_argument_group("model, policy and destination")
    what.add_argument("--model", metavar="SPEC", help="roboflow:PROJECT/VERSION, workflow:WORKSPACE/WORKFLOW_ID, replay:DIR, onnx:MODEL.onnx (with the onnx plugin)")
    policy = what.add_mutually_exclusive_group()
    policy.add_argument("--policy", metavar="FILE", help="policy JSON file (see `alpolicy rules`)")
    policy.add_argument("--conditionals", metavar="JSON", help="Roboflow SDK conditionals as a JSON object (default: {})")
    what.add_argument("--to", metavar="SPEC", dest="destination", help="roboflow:PROJECT or folder:DIR")
    what.add_argument("--model-opt", action="append", default=[], type=plugin_option("batch=4"), metavar="KEY=VALUE",
                      help="a setting of the model's backend (repeatable; VALUE is JSON when it parses: true, 3, "
                      "[1,2], else text); each backend's options: `alpolicy options`")
    what.add_argument("--to-opt", action="append", default=[], type=plugin_option("merge=true"), metavar="KEY=VALUE",
                      help="a setting of the destination (repeatable, as --model-opt; e.g. folder: merge=true adds to "
                      "a folder holding files alpolicy did not write); each destination's options: `alpolicy options`")
    what.add_argument("--labels", metavar="FILE", help="class names, one per line (onnx: models without names in their metadata; = --model-opt labels=FILE)")
    images = parser.add_argument_group("images")
    images.add_argument("--extension", action="append", metavar="EXT", help="only these extensions (repeatable; case-insensitive); default: .jpg .jpeg .png .bmp .webp .tif .tiff")
    images.add_argument("--recursive", action="store_true", help="include sub-folders")
    images.add_argument("--follow-symlinks", action="store_true", help="also follow symbolic links leaving SOURCE (default: skipped and counted in the summary)")
    frames = images.add_mutually_exclusive_group()
    frames.add_argument("--every", type=argument(whole_number, minimum=1), metavar="N",
                        help="a video source (the alpolicy-video plugin): every N-th frame")
    frames.add_argument("--fps", type=argument(number, above=0), metavar="F",
                        help="a video source: F frames per second of video time, the first at or after each 1/F s "
                        "(default: 1 per second)")
    behaviour = parser.add_argument_group("run")
    behaviour.add_argument("--concurrency", type=argument(whole_number, minimum=1), default=DEFAULT_CONCURRENCY, metavar="N", help=f"requests in flight per stage (default {DEFAULT_CONCURRENCY})")
    behaviour.add_argument("--executor", metavar="SPEC", help="where inference and pixel measurements run: threads "
                           "(default, this process), dask-local:N (N local worker processes) or dask://HOST:PORT (a Dask "
                           "scheduler; with the dask plugin); decisions, journal and sends stay here, the same on every executor")
    behaviour.add_argument("--dry-run", action="store_true", help="do everything but send (the destination is still checked, read-only: a typo'd project stops the run)")
    behaviour.add_argument("--reuse-predictions", action="store_true", help="decide from predictions stored in the journal: each image's latest, or with --model those of its fingerprint (model and settings); the summary names the fingerprints used")
    behaviour.add_argument("--journal", default=DEFAULT_JOURNAL, metavar="PATH", help=f"SQLite journal for resume and exactly-once (default {DEFAULT_JOURNAL})")
    behaviour.add_argument("--wait-for-journal", type=argument(number, minimum=0), default=0.0, metavar="SECONDS", help="a journal has one writer at a time: wait up to SECONDS for another run using it (default: stop at once, naming it)")
    behaviour.add_argument("--decisions", metavar="PATH", help="decisions log (JSON lines; default: decisions/JOURNAL-STEM-run-N.jsonl next to the journal)")
    behaviour.add_argument("--retry-for", type=argument(number, minimum=0), metavar="SECONDS", default=DEFAULT_RETRY_FOR,
                           help="at the end, keep retrying images whose inference or send failed on a service error, "
                           f"in rounds with backoff, for up to this long (default {DEFAULT_RETRY_FOR:g}; 0: leave them pending)")
    behaviour.add_argument("--tag", action="append", default=[], metavar="TAG", help="tag every image sent (repeatable)")
    behaviour.add_argument("--no-progress", action="store_true", help="no progress output")
    behaviour.add_argument("--json", action="store_true", help="print the run report as JSON instead of the summary")
    behaviour.add_argument("--report", metavar="DIR", help="after the run, write an HTML report to DIR/index.html (see `alpolicy report`)")
    remote = parser.add_argument_group("services")
    remote.add_argument("--api-key", metavar="KEY", help="Roboflow API key (prefer $ROBOFLOW_API_KEY: arguments show in `ps`); never sent to other services")
    remote.add_argument("--inference-url", type=argument(service_url), metavar="URL", help="inference server (default: $ROBOFLOW_INFERENCE_URL or Roboflow hosted)")
    remote.add_argument("--api-url", type=argument(service_url), metavar="URL", help="Roboflow API (default: $ROBOFLOW_API_URL or https://api.roboflow.com)")
    remote.add_argument("--confidence", type=argument(number, minimum=0, maximum=100), default=40, metavar="PCT", help="minimum confidence the model server returns, percent (default 40)")
    remote.add_argument("--overlap", type=argument(number, minimum=0, maximum=100), default=30, metavar="PCT", help="NMS overlap threshold, percent (default 30)")
    remote.add_argument("--split", default="train", choices=("train", "valid", "test"), help="Roboflow split for uploads")
    remote.add_argument("--batch", metavar="NAME", help="Roboflow batch name or prefix (default: alpolicy)")
    remote.add_argument("--batch-recreation", choices=("never", "daily", "weekly", "monthly"),
                        help="start a new Roboflow batch every day/week/month: NAME_2026_11_27 (as Roboflow Inference; "
                        "default never; = --to-opt batch_recreation=...)")
    remote.add_argument("--max-size", type=argument(whole_number, minimum=1), metavar="PX", help="downscale uploads to this longest side (pre-labels rescaled; = --to-opt max_size=PX)")
    remote.add_argument("--jpeg-quality", type=argument(whole_number, minimum=1, maximum=95), metavar="Q", help="re-encode uploads as JPEG at this quality (1-95; = --to-opt jpeg_quality=Q)")
    remote.add_argument("--timeout", type=argument(number, above=0), default=60.0, metavar="S", help="seconds per request (default 60)")
    remote.add_argument("--labelstudio-url", type=argument(service_url), metavar="URL", help="Label Studio server for --to labelstudio:PROJECT_ID|new (default: $LABEL_STUDIO_URL or http://localhost:8080; token from $LABEL_STUDIO_API_KEY; = --to-opt labelstudio_url=URL)")
    remote.add_argument("--max-detections", type=argument(whole_number, minimum=1), default=MAX_DETECTIONS, metavar="N",
                        help=f"a prediction with more detections fails its image (default {MAX_DETECTIONS:,})")
    remote.add_argument("--max-response-mb", type=argument(number, above=0), default=DEFAULT_MAX_BYTES / 2**20, metavar="MB",
                        help=f"a model answer or prediction file larger than this (MiB) fails its image (default {DEFAULT_MAX_BYTES // 2**20})")
    remote.add_argument("--allow-insecure-http", action="store_true", help="let the API key or token go to a plain http:// URL of another machine (refused without it; http://localhost and 127.0.0.1 are fine)")
    remote.add_argument("--add-missing-labels", action="store_true", help="labelstudio: add predicted classes missing from the project's labeling config instead of failing those images (= --to-opt add_missing_labels=true)")
    parser.set_defaults(handler=cmd_run)


#: The URL flags of services that receive a secret, and which one: a plain ``http://`` URL of
#: another machine is refused naming the flag (the backends and destinations refuse it too, for
#: the environment variables and for Python callers).
SECRET_URL_FLAGS = (("inference_url", "--inference-url", "API key"), ("api_url", "--api-url", "API key"),
                    ("labelstudio_url", "--labelstudio-url", "API token"))


#: The dedicated flags that are aliases of plugin options: ``--max-size PX`` is ``--to-opt max_size=PX``
#: (the interface users were promised), for whichever plugin ``--model``/``--to`` names.
MODEL_OPTION_FLAGS = ("labels",)
DESTINATION_OPTION_FLAGS = ("batch_recreation", "max_size", "jpeg_quality", "labelstudio_url", "add_missing_labels")


def plugin_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The backend's and the destination's ``extra``: ``--model-opt``/``--to-opt`` and the flags
    that are aliases of options (only those given), checked against the chosen plugins' schemas
    here, so that each problem names the flag the user typed (one line each, exit 2)."""
    registry = get_registry()
    settings, problems = [], []
    for kind, spec, assignments, flags in (("model", args.model, args.model_opt, MODEL_OPTION_FLAGS),
                                           ("destination", args.destination, args.to_opt, DESTINATION_OPTION_FLAGS)):
        aliases = {key: ("--" + key.replace("_", "-"), getattr(args, key)) for key in flags}
        values, names = plugin_options.from_command_line(assignments, aliases, kind)
        problems += plugin_options.problems_for(registry, kind, spec, values, names)
        settings.append(values)
    if problems:
        raise plugin_options.OptionsError(problems)
    return settings[0], settings[1]


#: The flags that are settings of the source (``SourceOptions.extra``), by setting name.
SOURCE_OPTION_FLAGS = {"every": "--every", "fps": "--fps"}


def source_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The source's ``extra`` from its flags (only those given), refused in one line naming the
    flag when the source SOURCE names does not take it (``--every`` on a folder of images)."""
    extra = {key: getattr(args, key) for key in SOURCE_OPTION_FLAGS if getattr(args, key) is not None}
    if extra:
        registry = get_registry()
        entry, _ = choose_source(args.source, registry)
        check_source_options(entry, extra, registry, names=SOURCE_OPTION_FLAGS)
    return extra


def cmd_run(args: argparse.Namespace) -> int:
    for attribute, flag, secret in SECRET_URL_FLAGS:
        url = getattr(args, attribute)
        if url:
            cleartext_secret(url, flag, secret=secret, allow_insecure_http=args.allow_insecure_http)
    if args.policy is None and args.conditionals is None:
        policy = Policy.from_conditionals({})
    else:
        policy = load_policy_argument(args.policy, args.conditionals)
    if args.destination is None and not args.dry_run:
        raise UsageError("say where qualifying images go with --to (roboflow:PROJECT or folder:DIR), or use --dry-run")
    if args.report and args.journal == ":memory:":
        raise UsageError("--report reads the run back from its journal: give --journal a file, not :memory:")
    if args.model is None and not args.reuse_predictions:
        raise UsageError("say which model to run with --model (e.g. roboflow:PROJECT/VERSION), or use --reuse-predictions")
    if args.max_detections < 1 or not 0 < args.max_response_mb < 2**30:
        raise UsageError("--max-detections and --max-response-mb must be positive")
    model_extra, destination_extra = plugin_settings(args)
    source_extra = source_settings(args)
    options = RunOptions(
        concurrency=args.concurrency,
        retry_for=args.retry_for,
        executor=args.executor,
        dry_run=args.dry_run,
        reuse_predictions=args.reuse_predictions,
        journal=args.journal,
        wait_for_journal=args.wait_for_journal,
        decisions_log=args.decisions,
        progress=not (args.no_progress or args.json),  # a bar on a terminal, a line every 5 s otherwise
        tags=tuple(args.tag),
        model_options=ModelOptions(
            api_key=args.api_key, inference_url=args.inference_url, confidence=args.confidence, overlap=args.overlap,
            timeout=args.timeout, extra=model_extra,
            max_detections=args.max_detections, max_response_bytes=int(args.max_response_mb * 2**20),
            allow_insecure_http=args.allow_insecure_http,
        ),
        destination_options=DestinationOptions(
            # --api-key is the Roboflow key: never hand it to another service (Label Studio reads
            # its own token from $LABEL_STUDIO_API_KEY).
            api_key=args.api_key if (args.destination or "").startswith("roboflow:") else None,
            api_url=args.api_url, split=args.split, batch=args.batch, timeout=args.timeout,
            extra=destination_extra,
            allow_insecure_http=args.allow_insecure_http,
        ),
    )
    report = run(
        args.source, policy, model=args.model, destination=args.destination, options=options,
        extensions=normalise_extensions(args.extension), recursive=args.recursive,
        follow_symlinks=args.follow_symlinks, source_extra=source_extra,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str))
    else:
        print(report.summary())
    if args.report:
        page = write_run_report(report.journal, args.report, report.run_id)
        print(f"  report:        {page}", file=sys.stderr if args.json else sys.stdout)
    sys.stdout.flush()
    return report.exit_code
