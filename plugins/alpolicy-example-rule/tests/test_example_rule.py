"""Tests of the example plugin, run against the installed package (``pip install .``)."""

import pytest

import alpolicy

POLICY = {"version": 1, "detection": [{"rule": "aspect_ratio", "min": 2}]}


def prediction(width: float, height: float) -> dict:
    box = {"x": 50, "y": 50, "width": width, "height": height, "confidence": 0.9, "class": "pole"}
    return {"image": {"width": 100, "height": 100}, "predictions": [box]}


def test_the_rule_is_discovered_through_its_entry_point():
    plugin = alpolicy.get_registry().rules["aspect_ratio"].plugin
    assert plugin == "example"


@pytest.mark.parametrize(("width", "height", "qualifies"), [(20, 10, True), (19.9, 10, False), (30, 10, True)])
def test_aspect_ratio_bounds(width, height, qualifies):
    decision = alpolicy.Policy.from_dict(POLICY).evaluate(prediction(width, height))
    assert decision.qualifies is qualifies
    assert any("aspect ratio" in reason for reason in decision.reasons) or not decision.qualifies


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
