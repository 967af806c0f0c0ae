"""A broken plugin stops alpolicy in one line that says what is wrong and how to start without it.

Each plugin here is a real third-party distribution: a module and a dist-info with an ``alpolicy``
entry point in a temporary site folder on ``PYTHONPATH`` (what ``pip install`` leaves behind), next
to a healthy plugin. The real ``alpolicy rules`` must exit 2 with one line: the plugin, what is
wrong with it (a misspelt hook gets "did you mean"), then ``ALPOLICY_LOAD_PLUGINS=<the other
plugins> alpolicy ...``; and the suggested command must then work, with the healthy plugin's rule.
"""

from __future__ import annotations

import importlib.metadata
import os
import re

import pytest

from .plugin_packages import install
from .cli import alpolicy

HEALTHY = """
import alpolicy
from alpolicy.rules.image import make_witnesses

@alpolicy.hookimpl
def alpolicy_rules(register):
    register(alpolicy.RuleSpec("always_fine", alpolicy.Stage.IMAGE, {"type": "object"}, make_witnesses, "a healthy rule"))
"""

BROKEN = {
    "misspelt": """
        import alpolicy

        @alpolicy.hookimpl
        def alpolicy_rule(register):  # the hook is alpolicy_rules
            pass
    """,
    "raises": """
        import alpolicy

        @alpolicy.hookimpl
        def alpolicy_rules(register):
            raise RuntimeError("rule table missing\\nsecond line")
    """,
    "unimportable": """
        import alpolicy_no_such_dependency
    """,
    "shadows": """
        import alpolicy
        from alpolicy.rules.image import make_witnesses

        @alpolicy.hookimpl
        def alpolicy_rules(register):
            register(alpolicy.RuleSpec("confidence", alpolicy.Stage.IMAGE, {"type": "object"}, make_witnesses, "a duplicate"))
    """,
}

PROBLEM = {
    "misspelt": "plugin 'misspelt' implements unknown hook 'alpolicy_rule' (did you mean 'alpolicy_rules'?)",
    "raises": "plugin 'raises' failed in alpolicy_rules: RuntimeError: rule table missing\\nsecond line",
    "unimportable": (
        "plugin 'unimportable' (broken-unimportable) failed to load: "
        "ModuleNotFoundError: No module named 'alpolicy_no_such_dependency'"
    ),
    "shadows": "rule 'confidence' is registered twice: by plugin 'alpolicy.rules.detection' and by plugin 'shadows'",
}
FIX = "fix the plugin or start without it"
WAY_OUT = {name: FIX for name in BROKEN} | {"shadows": "rename it in plugin 'shadows' or start without that plugin"}


@pytest.fixture(params=sorted(BROKEN))
def broken(request, tmp_path) -> tuple[str, dict[str, str]]:
    """A site folder with the healthy plugin and one broken plugin; its name and the environment."""
    name = request.param
    install(tmp_path, "healthy", "healthy-rules", HEALTHY)
    install(tmp_path, name, f"broken-{name}", BROKEN[name])
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    return name, {"PYTHONPATH": path}


def installed_elsewhere() -> set[str]:
    """The plugins of this virtualenv (e.g. onnx): they belong in the suggested list too."""
    return {entry_point.name for entry_point in importlib.metadata.entry_points(group="alpolicy")}


@pytest.mark.slow
def test_a_broken_plugin_is_one_line_with_the_way_to_start_without_it(broken):
    name, env = broken
    result = alpolicy("rules", env=env)
    assert (result.code, result.out) == (2, ""), result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
    expected = f"alpolicy: error: {PROBLEM[name]}; {WAY_OUT[name]}: ALPOLICY_LOAD_PLUGINS="
    match = re.fullmatch(rf"{re.escape(expected)}(\S*) alpolicy \.\.\.\n", result.err)
    assert match, f"{result.err!r} is not {expected!r}<plugins> alpolicy ..."
    suggested = match.group(1)
    assert set(suggested.split(",")) == {"healthy"} | installed_elsewhere() - {name}

    without = alpolicy("rules", env={**env, "ALPOLICY_LOAD_PLUGINS": suggested})
    assert without.code == 0, without.err
    assert "always_fine" in without.out


@pytest.mark.slow
def test_the_last_plugin_left_out_is_an_empty_list(tmp_path):
    """With no other plugin installed the way out is ``ALPOLICY_LOAD_PLUGINS=''`` (built-ins only)."""
    install(tmp_path, "misspelt", "broken-misspelt", BROKEN["misspelt"])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)}
    only = {**env, "ALPOLICY_LOAD_PLUGINS": "misspelt"}
    result = alpolicy("rules", env=only)
    assert (result.code, result.err) == (2, f"alpolicy: error: {PROBLEM['misspelt']}; {FIX}: ALPOLICY_LOAD_PLUGINS='' alpolicy ...\n")
    assert alpolicy("rules", env={**env, "ALPOLICY_LOAD_PLUGINS": ""}).code == 0


@pytest.mark.slow
def test_two_plugins_with_the_same_rule_suggest_starting_without_the_second(tmp_path):
    install(tmp_path, "healthy", "healthy-rules", HEALTHY)
    install(tmp_path, "twin", "twin-rules", HEALTHY)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)}
    result = alpolicy("rules", env=env)
    assert result.code == 2 and result.err.count("\n") == 1, result.err
    match = re.fullmatch(
        r"alpolicy: error: rule 'always_fine' is registered twice: by plugin '(\w+)' and by plugin '(\w+)'"
        r"; rename it in plugin '(\w+)' or start without that plugin: ALPOLICY_LOAD_PLUGINS=(\S*) alpolicy \.\.\.\n",
        result.err,
    )
    assert match, result.err
    first, second, culprit, suggested = match.groups()
    assert culprit == second
    assert {first, second} == {"healthy", "twin"}
    assert set(suggested.split(",")) == {first} | installed_elsewhere()
    without = alpolicy("rules", env={**env, "ALPOLICY_LOAD_PLUGINS": suggested})
    assert without.code == 0 and "always_fine" in without.out, without.err
