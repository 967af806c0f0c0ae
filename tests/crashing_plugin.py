"""A third-party plugin with bugs, for the tests of "a crashing plugin fails its images, not the run".

A plain pluggy plugin module: the tests register it in-process (``make_plugin_manager(extra=...)``)
and, for the real CLI, install it as a distribution with an ``alpolicy`` entry point named
``crashing-rule`` (see tests/test_plugin_crashes.py). Each component crashes the way real code does
(a lookup that misses, an attribute of ``None``) on inputs it did not expect, and works otherwise:

* detection rule ``by_class_id``: reads ``class_id``, which a prediction need not have;
* image rule ``explodes``: looks each detection's class up in a table without ``"bomb"``;
* image rule ``tongue_tied``: passes, but its ``explain`` misses a key;
* image rule ``unbuildable``: its factory reads a parameter that is not there;
* backend ``crashing:``: one car per image, but its output lacks ``"model_output"`` for images
  whose file name holds ``crash``;
* destination ``crashing:``: its upload client is ``None`` for images whose file name holds ``crash``;
* sampling rule ``fragile``: takes every image, but the method named by its ``crash_in`` parameter
  (``prepare``, run in the worker threads, ``matches``, ``commit`` or ``explain``) looks the file
  name's prefix up in a table that knows only ``frame``: ``KeyError: 'crash'`` for ``crash_*``.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import alpolicy
from alpolicy.destinations import Receipt
from alpolicy.registry import DestinationSpec, InferenceBackendSpec

PLUGIN_NAME = "crashing-rule"
INTEGER_MIN = {"type": "object", "properties": {"min": {"type": "integer"}}}


class ByClassId:
    def accepts(self, detection: alpolicy.Detection, prediction: alpolicy.Prediction) -> bool:
        return detection["class_id"] == 0

    def explain(self, detection: alpolicy.Detection, prediction: alpolicy.Prediction, accepted: bool) -> str:
        return "class id 0" if accepted else "another class id"


class Explodes:
    thresholds = {"car": 0.5, "dog": 0.5, "person": 0.5}

    def check(self, prediction: alpolicy.Prediction, witnesses: list) -> bool:
        return all(d["confidence"] >= self.thresholds[d["class"]] for d in prediction.detections)

    def explain(self, prediction: alpolicy.Prediction, witnesses: list, passed: bool) -> str:
        return "every detection above its class threshold" if passed else "a detection under its class threshold"


class TongueTied:
    def check(self, prediction: alpolicy.Prediction, witnesses: list) -> bool:
        return True

    def explain(self, prediction: alpolicy.Prediction, witnesses: list, passed: bool) -> str:
        return {"car": "cars only"}[prediction.detections[0]["class"]]


def make_unbuildable(params: dict[str, Any]) -> Any:
    return params["missing"]


class CrashingBackend:
    model_id = "crashing/1"

    def __init__(self, target: str, options: Any) -> None:
        self.target = target

    def predict(self, image: Any) -> alpolicy.Prediction:
        output: dict[str, Any] = {"boxes": [{"x": 5, "y": 5, "width": 4, "height": 4, "confidence": 0.9, "class": "car"}]}
        if "crash" not in os.path.basename(image.path):
            output["model_output"] = output["boxes"]
        return alpolicy.Prediction(640, 480, list(output["model_output"]))

    def close(self) -> None:
        pass


class CrashingDestination:
    def __init__(self, target: str, options: Any) -> None:
        self.name = f"crashing:{target}"
        self.sent: list[str] = []

    def check(self) -> None:
        pass

    def send(self, delivery: Any) -> Receipt:
        client = None if "crash" in os.path.basename(delivery.image.path) else self
        client.sent.append(delivery.image.path)  # AttributeError on None, the bug
        return Receipt(delivery.key)

    def close(self) -> None:
        pass


class Fragile:
    role = "strategy"
    known = {"frame": True}

    def __init__(self, crash_in: str) -> None:
        self.crash_in = crash_in
        self.current: Any = None

    def _step(self, method: str, image: Any) -> None:
        if method == self.crash_in:
            self.known[os.path.basename(image.path).split("_")[0]]  # KeyError for an unknown prefix, the bug

    def prepare(self, image: Any) -> None:
        self._step("prepare", image)

    def matches(self, image: Any, decision: Any) -> bool:
        self.current = image
        self._step("matches", image)
        return True

    def commit(self, image: Any, decision: Any) -> None:
        self._step("commit", image)

    def explain(self, matched: bool) -> str:
        self._step("explain", self.current)
        return "takes every image"


FRAGILE_PARAMS = {"type": "object", "properties": {"crash_in": {"enum": ["prepare", "matches", "commit", "explain"]}},
                  "required": ["crash_in"]}


@alpolicy.hookimpl
def alpolicy_rules(register: Callable[[alpolicy.RuleSpec], None]) -> None:
    register(alpolicy.RuleSpec("by_class_id", alpolicy.Stage.DETECTION, {"type": "object"}, lambda params: ByClassId(), "reads class_id"))
    register(alpolicy.RuleSpec("explodes", alpolicy.Stage.IMAGE, INTEGER_MIN, lambda params: Explodes(), "crashes on bombs"))
    register(alpolicy.RuleSpec("tongue_tied", alpolicy.Stage.IMAGE, INTEGER_MIN, lambda params: TongueTied(), "cannot explain"))
    register(alpolicy.RuleSpec("unbuildable", alpolicy.Stage.IMAGE, INTEGER_MIN, make_unbuildable, "cannot be built"))
    register(alpolicy.RuleSpec("fragile", alpolicy.Stage.SAMPLING, FRAGILE_PARAMS,
                               lambda params: Fragile(params["crash_in"]), "crashes on crash_* images"))


@alpolicy.hookimpl
def alpolicy_inference_backends(register: Callable[[InferenceBackendSpec], None]) -> None:
    register(InferenceBackendSpec("crashing", CrashingBackend, "crashes on some images"))


@alpolicy.hookimpl
def alpolicy_destinations(register: Callable[[DestinationSpec], None]) -> None:
    register(DestinationSpec("crashing", CrashingDestination, "crashes on some images"))
