"""Tests of the example plugin, run against the installed package (``pip install .``).

They use :mod:`alpolicy.testing`: real predictions, decisions and runs from a few arguments, and
the fixtures of ``alpolicy.testing.pytest_plugin`` (enabled in ``conftest.py``).
"""

import pytest

import alpolicy
from alpolicy.testing import (CollectingDestination, StaticBackend, evaluate, make_classification, make_detection,
                              make_prediction, run_one)

from alpolicy_example_rule import plugin

POLICY = {"version": 1, "detection": [{"rule": "aspect_ratio", "min": 2}]}


def prediction(width: float, height: float) -> alpolicy.Prediction:
    return make_prediction(make_detection("pole", 0.9, width=width, height=height), width=100, height=100)


def test_the_rule_is_discovered_through_its_entry_point():
    plugin_name = alpolicy.get_registry().rules["aspect_ratio"].plugin
    assert plugin_name == "example"


@pytest.mark.parametrize(("width", "height", "qualifies"), [(20, 10, True), (19.9, 10, False), (30, 10, True)])
def test_aspect_ratio_bounds(width, height, qualifies):
    decision = evaluate(POLICY, prediction(width, height))
    assert decision.qualifies is qualifies
    assert any("aspect ratio" in reason for reason in decision.reasons) or not decision.qualifies


def test_a_classifier_s_answer_has_no_box_to_judge():
    decision = evaluate(POLICY, make_classification({"pole": 0.9, "tree": 0.1}))
    assert not decision.qualifies and decision.rejected_by == "aspect_ratio"
    assert decision.reasons[0].startswith("aspect_ratio does not apply to classification predictions")


def test_min_above_max_is_a_policy_error_at_the_parameter():
    with pytest.raises(alpolicy.PolicyError) as caught:
        alpolicy.Policy.from_dict({"version": 1, "detection": [{"rule": "aspect_ratio", "min": 3, "max": 1}]})
    assert caught.value.messages == ["$.detection[0].min: 3 is greater than max 1"]


def test_schema_errors_name_the_parameter():
    with pytest.raises(alpolicy.PolicyError) as caught:
        alpolicy.Policy.from_dict({"version": 1, "detection": [{"rule": "aspect_ratio", "min": 0, "mx": 2}]})
    messages = "\n".join(caught.value.messages)
    assert "$.detection[0].min: 0 is less than or equal to the minimum of 0" in messages
    assert "$.detection[0].mx: unknown parameter 'mx' for rule 'aspect_ratio' (did you mean 'max'?)" in messages


def test_the_plugin_module_alone_on_the_built_ins(alpolicy_registry_with):
    """Registered in code, without the entry point: what a plugin's tests see before it is installed."""
    registry = alpolicy_registry_with(plugin)
    assert registry.rules["aspect_ratio"].plugin == plugin.__name__
    assert evaluate(POLICY, prediction(30, 10), registry=registry).qualifies


def test_a_one_image_run_sends_only_what_the_rule_accepts(alpolicy_images):
    image = sorted(alpolicy_images.iterdir())[0]
    policy = {"version": 1, "detection": [{"rule": "aspect_ratio", "min": 2}], "image": {"rule": "witnesses", "min": 1}}
    for width, height, sent in ((30, 10, 1), (10, 30, 0)):
        destination = CollectingDestination()
        report = run_one(image, backend=StaticBackend(prediction(width, height)),
                         destination=destination, policy=policy)
        assert (report.sent, len(destination.deliveries)) == (sent, sent)
        assert report.rejected_by == ({} if sent else {"witnesses": 1})
