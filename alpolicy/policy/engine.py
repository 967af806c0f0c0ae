"""Policies: load, validate as a whole, compile once into plain objects, evaluate per image.

Compilation turns every rule object into the small object its factory returns and wraps image
rules in ``all`` / ``any`` / ``not`` nodes. ``evaluate`` then only calls methods on those objects:
no pluggy dispatch and no schema validation per image.

Task types: a rule may apply to some tasks only (:attr:`RuleSpec.tasks`: ``box_area`` reads
boxes, which a classifier has not). A policy holding a rule that cannot judge a prediction's task
does not qualify the image, whatever the other rules say and wherever the rule sits (under
``any`` or ``not`` too: a rule that cannot be asked answers neither yes nor no); its decision's
trace holds ``(leaf, None)`` for each such rule, which ``explain`` words as ``box_area does not
apply to classification predictions`` and ``rejected_by`` names. No such rule's code runs.
:meth:`Policy.check_task` refuses such a policy up front when the model's task is known.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import AlpolicyError, PluginCrash, PolicyError, Problem, RuleError, UsageError, exception_line, rule_component
from ..registry import Registry, RuleSpec, Stage, default_registry
from .decision import Decision
from .policy_json import document_problems, loads as load_policy_json
from .prediction import TASKS, Detection, Prediction, PredictionFormatError
from .rule import DetectionRule, ImageRule, ParameterError, SamplingRule
from .validation import common_keys, error_paths, json_path, path_order, schema_problems

POLICY_VERSION = 1
#: The image stage of a policy that has none: an image qualifies when one detection is a witness.
DEFAULT_IMAGE_NODE: dict[str, Any] = {"rule": "witnesses", "min": 1}
_COMPOSITIONS = ("all", "any", "not")


#: A decision in a form that travels (see :meth:`Policy.verdict`): qualifies, witness positions,
#: the trace as (rule position, passed).
Verdict = tuple[bool, tuple[int, ...], tuple[tuple[int, "bool | None"], ...]]


@dataclass(slots=True, eq=False)
class Leaf:
    """A compiled rule object: the rule, its name, a label unique in the policy, and its place."""

    rule: Any
    name: str
    label: str
    tag: str | None
    path: str
    #: The rule object's JSON (sampling rules are rebuilt from it for every run: their state is the run's).
    source: dict[str, Any] | None = None
    factory: Any = None
    #: The plugin that registered the rule (named when the rule's code raises).
    plugin: str = ""
    #: The task types the rule applies to (:attr:`RuleSpec.tasks`; ``None``: every task).
    tasks: frozenset[str] | None = None
    # The trace entries this leaf appends, built once: the hot loop then allocates no tuple per rule.
    passed_entry: tuple["Leaf", bool] = field(init=False, repr=False)
    failed_entry: tuple["Leaf", bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.passed_entry, self.failed_entry = (self, True), (self, False)

    def evaluate(self, prediction: Prediction, witnesses: list[Detection], trace: list) -> bool:
        if self.rule.check(prediction, witnesses):
            trace.append(self.passed_entry)
            return True
        trace.append(self.failed_entry)
        return False

    @property
    def short(self) -> str:
        return self.name

    def applies_to(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks

    def not_applicable(self, task: str) -> str:
        """Why this rule did not judge a prediction of ``task``, e.g. ``box_area does not apply to
        classification predictions (only to object-detection, ...)``."""
        return f"{self.name} does not apply to {task} predictions (only to {_task_list(self.tasks)})"

    def blames(self, outer: str | None = None) -> Iterator[tuple["Leaf", str]]:
        """This leaf and what ``rejected_by`` names when the evaluation of a failed policy ends here."""
        yield self, outer or self.label

    def call(self, method: Any, *args: Any) -> Any:
        """``method(*args)`` -- one of this rule's methods -- with an exception from the rule's code
        turned into a :class:`RuleError` naming the rule. (Not for the hot path: ``evaluate`` has
        one handler for all its calls and locates the rule only when one raised.)"""
        try:
            return method(*args)
        except AlpolicyError:  # already one line (a rule may raise UsageError on purpose)
            raise
        except Exception as error:
            raise RuleError(self.name, self.plugin, self.path, error) from error

    def locate(self, prediction: Prediction, witnesses: list[Detection]) -> bool:
        """``evaluate`` that names a rule which raises (run only after an evaluation raised)."""
        return bool(self.call(self.rule.check, prediction, witnesses))


@dataclass(slots=True, eq=False)
class AllNode:
    children: tuple[Any, ...]
    #: When every child is a rule: (check, passed entry, failed entry) per child, so the loop calls
    #: the rules directly (the SDK-default policy is such an ``all``).
    steps: tuple[tuple[Any, tuple, tuple], ...] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        leaves = all(type(child) is Leaf for child in self.children)
        self.steps = tuple((c.rule.check, c.passed_entry, c.failed_entry) for c in self.children) if leaves else None

    def evaluate(self, prediction: Prediction, witnesses: list[Detection], trace: list) -> bool:
        steps = self.steps
        if steps is not None:
            append = trace.append
            for check, passed, failed in steps:
                if not check(prediction, witnesses):
                    append(failed)
                    return False
                append(passed)
            return True
        for child in self.children:
            if not child.evaluate(prediction, witnesses, trace):
                return False
        return True

    @property
    def short(self) -> str:
        return f"all({', '.join(child.short for child in self.children)})"

    def blames(self, outer: str | None = None) -> Iterator[tuple[Leaf, str]]:
        # A failed ``all`` stopped at its first failing child, which is where the blame goes.
        for child in self.children:
            yield from child.blames(outer)

    def locate(self, prediction: Prediction, witnesses: list[Detection]) -> bool:
        return all(child.locate(prediction, witnesses) for child in self.children)


@dataclass(slots=True, eq=False)
class AnyNode:
    children: tuple[Any, ...]

    def evaluate(self, prediction: Prediction, witnesses: list[Detection], trace: list) -> bool:
        for child in self.children:
            if child.evaluate(prediction, witnesses, trace):
                return True
        return False

    @property
    def short(self) -> str:
        return f"any({', '.join(child.short for child in self.children)})"

    def blames(self, outer: str | None = None) -> Iterator[tuple[Leaf, str]]:
        # Every alternative failed: the composition itself said no.
        for child in self.children:
            yield from child.blames(outer or self.short)

    def locate(self, prediction: Prediction, witnesses: list[Detection]) -> bool:
        return any(child.locate(prediction, witnesses) for child in self.children)


@dataclass(slots=True, eq=False)
class NotNode:
    child: Any

    def evaluate(self, prediction: Prediction, witnesses: list[Detection], trace: list) -> bool:
        return not self.child.evaluate(prediction, witnesses, trace)

    @property
    def short(self) -> str:
        return f"not({self.child.short})"

    def blames(self, outer: str | None = None) -> Iterator[tuple[Leaf, str]]:
        yield from self.child.blames(outer or self.short)

    def locate(self, prediction: Prediction, witnesses: list[Detection]) -> bool:
        return not self.child.locate(prediction, witnesses)


class Policy:
    """A validated, compiled policy. Build one with :meth:`from_file`, :meth:`from_dict` or
    :meth:`from_conditionals`; evaluate images with :meth:`evaluate`."""

    def __init__(self, document: Mapping[str, Any], *, registry: Registry | None = None, source: str | None = None) -> None:
        self.registry = registry if registry is not None else default_registry()
        self.source = source
        early = document_problems(document)  # before anything recursive (jsonschema, _plain) sees it
        if early:
            raise PolicyError(early, source)
        document = _plain(document)
        problems = schema_problems(document, self.registry)
        compiler = _Compiler(self.registry, error_paths(document, self.registry) if problems else [])
        if isinstance(document, dict):
            compiler.compile(document)
        problems.extend(compiler.problems)
        if problems:
            raise PolicyError(sorted(problems, key=path_order), source)
        self._document: dict[str, Any] = document
        self.detection_leaves: tuple[Leaf, ...] = tuple(compiler.detection)
        self.image_root: Any = compiler.image_root
        self.sampling_leaves: tuple[Leaf, ...] = tuple(compiler.sampling)
        self.tags: tuple[str, ...] = tuple(document.get("tags", ()))
        #: Each detection rule's filter; chained, they keep the detections every rule accepts.
        self._selects = tuple(_selector(leaf.rule) for leaf in self.detection_leaves)
        #: What rejected an image whose evaluation ended at a leaf (see :meth:`rejected_by`).
        self._blame: dict[Leaf, str] = dict(self.image_root.blames())
        #: Per task, the rules that cannot judge its predictions (only the tasks that have some).
        self._not_applicable: dict[str, tuple[Leaf, ...]] = _not_applicable(self.leaves)

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, registry: Registry | None = None) -> "Policy":
        """A policy from a JSON-like dict (``{"version": 1, "detection": [...], ...}``)."""
        return cls(document, registry=registry)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, registry: Registry | None = None) -> "Policy":
        """A policy from a JSON file; a missing or malformed file is a :class:`PolicyError` too, and so
        are duplicate keys, NaN / Infinity, huge integers and nesting past the limits
        (:mod:`alpolicy.policy.policy_json`)."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError([Problem("$", "no such file")], source) from None
        except (OSError, UnicodeDecodeError) as error:
            raise PolicyError([Problem("$", f"cannot read the file: {error}")], source) from None
        try:
            document = load_policy_json(text, source)
        except json.JSONDecodeError as error:
            raise PolicyError(
                [Problem("$", f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}")], source
            ) from None
        from .inference_config import inference_config_to_document, looks_like_inference_config

        if looks_like_inference_config(document):  # a Roboflow Inference active-learning config, as-is
            try:
                document = inference_config_to_document(document)
            except PolicyError as error:
                raise PolicyError(error.problems, source) from None
        return cls(document, registry=registry, source=source)

    @classmethod
    def from_inference_config(cls, config: Mapping[str, Any], *, registry: Registry | None = None) -> "Policy":
        """The policy making Roboflow Inference's sampling decisions for its active-learning configuration."""
        from .inference_config import inference_config_to_document

        return cls(inference_config_to_document(config), registry=registry, source="inference configuration")

    @classmethod
    def from_conditionals(cls, conditionals: Mapping[str, Any] | None, *, registry: Registry | None = None) -> "Policy":
        """The policy that makes exactly the Roboflow SDK's decisions for its ``conditionals`` dict."""
        from .conditionals import conditionals_to_document

        return cls(conditionals_to_document(conditionals), registry=registry, source="conditionals")

    # ----------------------------------------------------------------- tasks
    @property
    def leaves(self) -> tuple[Leaf, ...]:
        """Every compiled rule of the policy: detection, image (in document order), sampling."""
        image = tuple(dict.fromkeys(leaf for leaf, _ in self.image_root.blames()))
        return self.detection_leaves + image + self.sampling_leaves

    def not_applicable(self, task: str) -> tuple[Leaf, ...]:
        """The rules of this policy that cannot judge a prediction of ``task`` (empty: all can)."""
        return self._not_applicable.get(task, ())

    def check_task(self, task: str | None, *, model: str | None = None) -> None:
        """Refuse, in one line (:class:`UsageError`), to run this policy on a model of ``task``
        when one of its rules cannot judge that task's predictions (``box_area`` on a classifier):
        every image would be rejected. ``None`` (the task is unknown) checks nothing; ``model``
        names the model in the message. The pipeline calls it once the backend is checked."""
        if task is None:
            return
        if task not in TASKS:
            raise UsageError(f"the model's task {task!r} is not one of {', '.join(TASKS)}")
        leaves = self.not_applicable(task)
        if not leaves:
            return
        rules = ", ".join(f"{leaf.path[2:]} {leaf.name}" for leaf in leaves)
        verb = "does" if len(leaves) == 1 else "do"
        article = "an" if task[0] in "aeiou" else "a"
        because = f"the model {model} is {article} {task} model" if model else f"checked for {task} models"
        only = f"; {leaves[0].name} applies to {_task_list(leaves[0].tasks)} models" if len(leaves) == 1 else ""
        raise UsageError(f"policy rule{'s' if len(leaves) > 1 else ''} {rules} {verb} not apply to {task} models "
                         f"({because}{only})")

    # ----------------------------------------------------------------- use
    # ----------------------------------------------------------------- decisions made elsewhere
    def verdict(self, prediction: Prediction) -> Verdict | None:
        """:meth:`evaluate` in a form that travels between processes: ``(qualifies, the witnesses'
        positions in prediction.detections, the trace as (rule position, passed))``, the rule
        positions those of :attr:`leaves`. A worker that inferred an image decides it here and
        the driver, with the same policy document, turns it back into its own :class:`Decision`
        with :meth:`decision_from`, identical to its own evaluation. ``None`` when the witnesses
        are not the prediction's own detections (a rule that built new ones): the driver then
        evaluates. A rule's crash is raised as by :meth:`evaluate`."""
        decision = self.evaluate(prediction)
        positions = {id(detection): index for index, detection in enumerate(decision.prediction.detections)}
        index = self._leaf_positions
        try:
            witnesses = tuple(positions[id(witness)] for witness in decision.witnesses)
        except KeyError:
            return None
        return decision.qualifies, witnesses, tuple((index[leaf], passed) for leaf, passed in decision.trace)

    def decision_from(self, prediction: Prediction, verdict: Verdict) -> Decision:
        """The :class:`Decision` a :meth:`verdict` of ``prediction`` (made by this policy's
        document, in any process) stands for, with this policy's own rules."""
        qualifies, witnesses, trace = verdict
        leaves, detections = self.leaves, prediction.detections
        return Decision(qualifies, prediction, [detections[i] for i in witnesses],
                        [(leaves[i], passed) for i, passed in trace], self)

    @property
    def _leaf_positions(self) -> dict[Leaf, int]:
        try:
            return self.__dict__["_leaf_positions_cache"]
        except KeyError:
            found = self.__dict__["_leaf_positions_cache"] = {leaf: i for i, leaf in enumerate(self.leaves)}
            return found

    def evaluate(self, prediction: Prediction | Mapping[str, Any]) -> Decision:
        """Decide one image from its prediction (a :class:`Prediction` or the Roboflow inference JSON).

        This is the hot path: it only finds the witnesses and walks the image rules, keeping the
        trace; everything else a :class:`Decision` says is derived from that trace when read.
        """
        if type(prediction) is not Prediction:
            prediction = Prediction.from_json(prediction, check=False)  # type: ignore[arg-type]
        if self._not_applicable and prediction.task in self._not_applicable:  # no rule's code runs
            return Decision(False, prediction, [], [(leaf, None) for leaf in self._not_applicable[prediction.task]], self)
        try:
            witnesses = prediction.detections
            for select in self._selects:
                witnesses = select(witnesses, prediction)
            if witnesses is prediction.detections:  # no detection rule: every detection counts
                witnesses = list(witnesses)
            trace: list = []
            qualifies = self.image_root.evaluate(prediction, witnesses, trace)
        except Exception as error:  # one handler for the whole evaluation: no cost per rule
            crash = self._crash(prediction, error)
            if crash is error:
                raise
            raise crash from (error if isinstance(crash, PluginCrash) else None)
        return Decision(qualifies, prediction, witnesses, trace, self)

    def _crash(self, prediction: Prediction, error: Exception) -> Exception:
        """What to raise when evaluating raised ``error``: the prediction's defect when it is
        malformed (:class:`PredictionFormatError`), else the rule whose code raised, found by
        evaluating again with each rule call guarded (rules are pure: it raises again)."""
        if isinstance(error, AlpolicyError):
            return error
        try:
            Prediction.from_json(prediction.to_json(), check=True)
        except PredictionFormatError as malformed:
            return malformed
        witnesses = prediction.detections
        try:
            for leaf, select in zip(self.detection_leaves, self._selects):
                witnesses = leaf.call(select, witnesses, prediction)
            self.image_root.locate(prediction, list(witnesses))
        except AlpolicyError as located:
            return located
        return PluginCrash("a rule of the policy", error)  # it did not raise a second time

    def rejected_by(self, trace: Sequence[tuple[Leaf, bool]]) -> str:
        """What made a failed evaluation fail, read from its trace: evaluation short-circuits, so
        the last rule evaluated lies inside the failing child of every ``all`` on the way down,
        and is named by the outermost ``any`` / ``not`` around it (or is the failing rule).
        A rule that does not apply to the prediction's task names itself (the first such rule)."""
        leaf, passed = trace[-1]
        if passed is None:
            return trace[0][0].label
        return self._blame[leaf]

    @property
    def document(self) -> dict[str, Any]:
        """The policy as JSON (a copy)."""
        return copy.deepcopy(self._document)

    @property
    def name(self) -> str | None:
        return self._document.get("name")

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self._document, indent=indent, ensure_ascii=False)

    def __repr__(self) -> str:
        label = self.name or self.source or "policy"
        return f"<Policy {label}: {len(self.detection_leaves)} detection rule(s), sampling {len(self.sampling_leaves)}>"


def _task_list(tasks: frozenset[str] | None) -> str:
    """The tasks in :data:`TASKS` order: ``object-detection, instance-segmentation and keypoint-detection``."""
    named = [task for task in TASKS if tasks is None or task in tasks]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


def _not_applicable(leaves: Sequence[Leaf]) -> dict[str, tuple[Leaf, ...]]:
    """Per task, the leaves that cannot judge it; tasks every leaf can judge are left out, so that
    the hot path tests one empty dict for the common policy."""
    found = {task: tuple(leaf for leaf in leaves if not leaf.applies_to(task)) for task in TASKS}
    return {task: leaves for task, leaves in found.items() if leaves}


def _selector(rule: Any) -> Any:
    """The rule's ``select`` (see :class:`DetectionRule`), or one built from its ``accepts`` for a
    duck-typed plugin rule that has none."""
    select = getattr(rule, "select", None)
    if callable(select):
        return select
    accepts = rule.accepts

    def select_accepted(detections: Sequence[Detection], prediction: Prediction) -> list[Detection]:
        return [detection for detection in detections if accepts(detection, prediction)]

    return select_accepted


def _plain(document: Any) -> Any:
    """A JSON-shaped deep copy: tuples become lists so that Python callers can pass tuples."""
    if isinstance(document, Mapping):
        return {key: _plain(value) for key, value in document.items()}
    if isinstance(document, (list, tuple)):
        return [_plain(value) for value in document]
    return document


class _Compiler:
    """Walks a (schema-checked) document, builds leaves and nodes, and collects semantic problems.

    Rule objects under a schema error are skipped so that every problem is reported once.
    """

    def __init__(self, registry: Registry, broken: Sequence[tuple[str | int, ...]]) -> None:
        self.registry = registry
        self.broken = broken
        self.problems: list[Problem] = []
        self.detection: list[Leaf] = []
        self.sampling: list[Leaf] = []
        self.image_root: Any = None
        self._name_count: dict[str, int] = {}

    def compile(self, document: dict[str, Any]) -> None:
        rule_objects = self._rule_objects(document)
        for obj, _path in rule_objects:
            name = obj.get("rule")
            if isinstance(name, str):
                self._name_count[name] = self._name_count.get(name, 0) + 1
        detection = document.get("detection", [])
        if isinstance(detection, list):
            for index, obj in enumerate(detection):
                leaf = self._leaf(obj, ("detection", index), Stage.DETECTION)
                if leaf is not None:
                    self.detection.append(leaf)
        image = document.get("image", DEFAULT_IMAGE_NODE)
        self.image_root = self._node(image, ("image",) if "image" in document else ())
        sampling = document.get("sampling", [])
        if isinstance(sampling, list):
            for index, obj in enumerate(sampling):
                leaf = self._leaf(obj, ("sampling", index), Stage.SAMPLING)
                if leaf is not None:
                    self.sampling.append(leaf)
            self._one_selector()

    def _one_selector(self) -> None:
        """At most one end-of-stream selector (a deferred rule with ``select``: ``diversity``),
        and not with ``top_k``: each would spend the run's budget its own way."""
        deferred = [leaf for leaf in self.sampling if getattr(leaf.rule, "role", None) == "deferred"]
        selectors = [leaf for leaf in deferred if callable(getattr(leaf.rule, "select", None))]
        if selectors and len(deferred) > 1:
            other = next(leaf for leaf in deferred if leaf is not selectors[0])
            self.problems.append(Problem(
                other.path, f"{other.name!r} cannot be combined with {selectors[0].name!r} at {selectors[0].path}: "
                "a policy has one end-of-stream selector (top_k or diversity)"))

    def _rule_objects(self, document: dict[str, Any]) -> list[tuple[dict, tuple]]:
        found: list[tuple[dict, tuple]] = []

        def walk(value: Any, path: tuple) -> None:
            if isinstance(value, dict):
                if "rule" in value:
                    found.append((value, path))
                for key, child in value.items():
                    walk(child, path + (key,))
            elif isinstance(value, list):
                for index, child in enumerate(value):
                    walk(child, path + (index,))

        walk(document, ())
        return found

    def _is_broken(self, path: tuple) -> bool:
        """True when a schema error lies at or inside ``path``."""
        return any(error[: len(path)] == path for error in self.broken)

    def _leaf(self, obj: Any, path: tuple, stage: Stage) -> Leaf | None:
        if not isinstance(obj, dict) or self._is_broken(path):
            return None
        spec: RuleSpec | None = self.registry.rules.get(obj.get("rule"))
        if spec is None or spec.stage is not stage:
            return None
        params = {key: value for key, value in obj.items() if key not in common_keys(stage)}
        where = json_path(path)
        try:
            rule = spec.factory(params)
        except ParameterError as error:
            target = json_path(path + (error.key,)) if error.key else where
            self.problems.append(Problem(target, error.message))
            return None
        except (ValueError, TypeError) as error:
            self.problems.append(Problem(where, f"rule {spec.name!r} rejected its parameters: {error}"))
            return None
        except Exception as error:  # a bug in the plugin's factory: located, not a traceback
            self.problems.append(Problem(where, f"{rule_component(spec.name, spec.plugin)} could not be built: {exception_line(error)}"))
            return None
        expected = {Stage.DETECTION: DetectionRule, Stage.IMAGE: ImageRule, Stage.SAMPLING: SamplingRule}[stage]
        if not _implements(rule, expected):
            methods = " and ".join(f"{name}()" for name in _METHODS[stage])
            self.problems.append(
                Problem(where, f"plugin {spec.plugin!r}: rule {spec.name!r} built {type(rule).__name__!r}, "
                        f"which lacks the {stage.value}-rule methods {methods}")
            )
            return None
        label = spec.name if self._name_count.get(spec.name, 0) <= 1 else f"{spec.name} at {where}"
        if stage is Stage.SAMPLING:
            return Leaf(rule, spec.name, obj.get("name") or label, obj.get("tag"), where, dict(obj), spec.factory,
                        spec.plugin, getattr(spec, "tasks", None))
        return Leaf(rule, spec.name, label, obj.get("tag"), where, plugin=spec.plugin, tasks=getattr(spec, "tasks", None))

    def _node(self, obj: Any, path: tuple) -> Any:
        if not isinstance(obj, dict):
            return None
        if "rule" in obj:
            return self._leaf(obj, path, Stage.IMAGE)
        present = [key for key in _COMPOSITIONS if key in obj]
        if len(present) > 1:
            self.problems.append(
                Problem(json_path(path), f"use one of all / any / not per object, not {' and '.join(present)}: nest them instead")
            )
            return None
        if not present:
            return None
        key = present[0]
        if key == "not":
            child = self._node(obj["not"], path + ("not",))
            return NotNode(child) if child is not None else None
        children = obj[key]
        if not isinstance(children, list):
            return None
        nodes = [self._node(child, path + (key, index)) for index, child in enumerate(children)]
        if any(node is None for node in nodes):
            return None
        return AllNode(tuple(nodes)) if key == "all" else AnyNode(tuple(nodes))


_METHODS = {Stage.DETECTION: ("accepts", "explain"), Stage.IMAGE: ("check", "explain"), Stage.SAMPLING: ("matches", "explain")}


def _implements(rule: Any, protocol: type) -> bool:
    """Duck-typed check, so plugin rules need not subclass our ABCs."""
    stage = {DetectionRule: Stage.DETECTION, ImageRule: Stage.IMAGE, SamplingRule: Stage.SAMPLING}[protocol]
    methods = _METHODS[stage]
    return isinstance(rule, protocol) or all(callable(getattr(rule, method, None)) for method in methods)
