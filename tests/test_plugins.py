"""The plugin system: built-ins through the same hooks, duplicates, misspelt hooks, selection."""

from __future__ import annotations

import pytest

import alpolicy
from alpolicy import (DestinationSpec, EmbedderSpec, ExecutorSpec, InferenceBackendSpec, PluginError, Policy, RuleSpec, SourceSpec, Stage,
                      UsageError, hookimpl)
from alpolicy.plugins import DEFAULT_PLUGINS, build_registry, make_plugin_manager
from alpolicy.rules.image import make_witnesses
from alpolicy.testing import registry_with  # the built-ins and the given (name, plugin) pairs

from .helpers import det, pred


class RulePlugin:
    def __init__(self, *specs: RuleSpec) -> None:
        self.specs = specs

    @hookimpl
    def alpolicy_rules(self, register):
        for spec in self.specs:
            register(spec)


def spec(name: str, stage: Stage = Stage.IMAGE, schema: dict | None = None) -> RuleSpec:
    return RuleSpec(name, stage, schema or {"type": "object", "properties": {"min": {"type": "integer"}}}, make_witnesses, "test")


# One test per hook: tests/test_plugin_docs.py fails when a hook has none (or no section in docs/plugins.md).
def test_hook_alpolicy_rules():
    registry = registry_with(("mine", RulePlugin(spec("at_least"))))
    assert registry.rules["at_least"].plugin == "mine"
    assert registry.plugins["mine"].rules == ["at_least"]
    policy = Policy.from_dict({"version": 1, "image": {"rule": "at_least", "min": 3}}, registry=registry)
    # With no detection rules every detection is a witness: 2 < 3, then 3 >= 3.
    assert policy.evaluate(pred(det(), det())).qualifies is False
    assert policy.evaluate(pred(det(), det(), det())).qualifies is True


def test_hook_alpolicy_inference_backends():
    class Backends:
        @hookimpl
        def alpolicy_inference_backends(self, register):
            register(InferenceBackendSpec("fake", lambda spec, **options: None, "a test backend"))

    registry = registry_with(("backends", Backends()))
    assert registry.backends["fake"].plugin == "backends"
    assert registry.plugins["backends"].backends == ["fake"]


def test_hook_alpolicy_destinations():
    class Destinations:
        @hookimpl
        def alpolicy_destinations(self, register):
            register(DestinationSpec("bucket", lambda spec, **options: None, "a test destination"))

    registry = registry_with(("dest", Destinations()))
    assert registry.destinations["bucket"].plugin == "dest"


def test_hook_alpolicy_sources():
    class Sources:
        @hookimpl
        def alpolicy_sources(self, register):
            register(SourceSpec("bucket", lambda target, options: [], "a test source"))

    registry = registry_with(("sources", Sources()))
    assert registry.sources["bucket"].plugin == "sources"
    assert registry.plugins["sources"].sources == ["bucket"]
    assert registry.sources["folder"].plugin == "alpolicy.sources.folder"


def test_hook_alpolicy_executors():
    class Executors:
        @hookimpl
        def alpolicy_executors(self, register):
            register(ExecutorSpec("inline", lambda target, options: alpolicy.ThreadExecutor(1), "a test executor",
                                  accepts_empty_target=True))

    registry = registry_with(("executors", Executors()))
    assert registry.executors["inline"].plugin == "executors"
    assert registry.plugins["executors"].executors == ["inline"]
    assert registry.executors["threads"].plugin == "alpolicy.runtime.executors"
    assert isinstance(alpolicy.make_executor("inline", None, registry), alpolicy.ThreadExecutor)
    with pytest.raises(UsageError, match=r"^no executor for 'inlin' \(did you mean 'inline'\?\); installed: inline, threads$"):
        alpolicy.make_executor("inlin:4", None, registry)


def test_hook_alpolicy_embedders():
    class Embedders:
        @hookimpl
        def alpolicy_embedders(self, register):
            register(EmbedderSpec("flat", lambda options: None, "a test embedder", options_schema={"type": "object", "properties": {}}))

    registry = registry_with(("embedders", Embedders()))
    assert registry.embedders["flat"].plugin == "embedders"
    assert registry.plugins["embedders"].embedders == ["flat"]
    assert registry.embedders["pixels"].plugin == "alpolicy.pixels.embedding"
    assert registry.plugins["alpolicy.backends.clip"].embedders == ["clip"]
    with pytest.raises(PluginError, match="embedder 'flat' is registered twice: by plugin 'embedders' and by plugin 'again'"):
        registry_with(("embedders", Embedders()), ("again", Embedders()))

    class BadName:
        @hookimpl
        def alpolicy_embedders(self, register):
            register(EmbedderSpec("Flat", lambda options: None, "a test embedder"))

    with pytest.raises(PluginError, match="registered embedder 'Flat': names are lower_snake_case"):
        registry_with(("bad", BadName()))


def test_builtins_are_registered_through_the_same_hooks():
    registry = registry_with()
    assert set(DEFAULT_PLUGINS) <= set(registry.plugins)
    assert registry.rules["confidence"].plugin == "alpolicy.rules.detection"
    assert registry.rules["witnesses"].plugin == "alpolicy.rules.image"


def test_a_duplicate_rule_name_names_both_plugins():
    with pytest.raises(PluginError) as caught:
        registry_with(("shadow", RulePlugin(spec("confidence", Stage.DETECTION))))
    assert str(caught.value) == (
        "rule 'confidence' is registered twice: by plugin 'alpolicy.rules.detection' and by plugin 'shadow'"
    )


def test_two_third_party_plugins_with_the_same_rule():
    with pytest.raises(PluginError, match="by plugin 'one' and by plugin 'two'"):
        registry_with(("one", RulePlugin(spec("dup"))), ("two", RulePlugin(spec("dup"))))


def test_a_misspelt_hook_fails_loudly():
    class Misspelt:
        @hookimpl
        def alpolicy_rule(self, register):  # missing the "s"
            pass

    with pytest.raises(PluginError) as caught:
        registry_with(("typo", Misspelt()))
    assert str(caught.value) == "plugin 'typo' implements unknown hook 'alpolicy_rule' (did you mean 'alpolicy_rules'?)"

    class Unrelated:
        @hookimpl
        def on_startup(self):
            pass

    with pytest.raises(PluginError) as caught:
        registry_with(("other", Unrelated()))
    assert str(caught.value) == (
        "plugin 'other' implements unknown hook 'on_startup'; "
        "known hooks: alpolicy_destinations, alpolicy_embedders, alpolicy_executors, alpolicy_inference_backends, alpolicy_rules, alpolicy_sources"
    )


def test_a_hook_with_a_wrong_argument_name_fails_loudly():
    class WrongArgument:
        @hookimpl
        def alpolicy_rules(self, registr):
            pass

    with pytest.raises(PluginError, match="plugin 'wrong' is invalid"):
        registry_with(("wrong", WrongArgument()))


def test_invalid_registrations_name_the_plugin():
    with pytest.raises(PluginError, match="plugin 'bad' registered rule 'Bad-Name'"):
        registry_with(("bad", RulePlugin(spec("Bad-Name"))))
    with pytest.raises(PluginError, match="plugin 'bad': rule 'broken' has an invalid JSON Schema"):
        registry_with(("bad", RulePlugin(spec("broken", schema={"type": "no-such-type"}))))

    class NotASpec:
        @hookimpl
        def alpolicy_rules(self, register):
            register({"name": "x"})

    with pytest.raises(PluginError, match="expected alpolicy.RuleSpec"):
        registry_with(("bad", NotASpec()))


def test_an_exception_inside_a_hook_names_the_plugin():
    class Crashes:
        @hookimpl
        def alpolicy_rules(self, register):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="plugin 'crashy' failed in alpolicy_rules: RuntimeError: boom"):
        registry_with(("crashy", Crashes()))


def test_a_plugin_rule_is_validated_exactly_like_a_builtin():
    schema = {"type": "object", "properties": {"min": {"type": "integer", "minimum": 0}}, "required": ["min"]}
    registry = registry_with(("mine", RulePlugin(spec("at_least", schema=schema))))
    with pytest.raises(alpolicy.PolicyError) as caught:
        Policy.from_dict({"version": 1, "image": {"all": [{"rule": "at_least", "min": -1, "mxa": 1}, {"rule": "at_least"}]}}, registry=registry)
    assert caught.value.messages == [
        "$.image.all[0].min: -1 is less than the minimum of 0",
        "$.image.all[0].mxa: unknown parameter 'mxa' for rule 'at_least'; expected one of: min, note, rule, tag",
        "$.image.all[1]: 'min' is a required property",
    ]


def test_a_rule_object_without_the_stage_methods_is_reported():
    bad = RuleSpec("lazy", Stage.IMAGE, {"type": "object"}, lambda params: object(), "returns nothing useful")
    registry = registry_with(("lazy", RulePlugin(bad)))
    with pytest.raises(alpolicy.PolicyError, match=r"rule 'lazy' built 'object', which lacks the image-rule methods check\(\) and explain\(\)"):
        Policy.from_dict({"version": 1, "image": {"rule": "lazy"}}, registry=registry)


def test_load_plugins_env_naming_an_absent_plugin(monkeypatch):
    monkeypatch.setenv("ALPOLICY_LOAD_PLUGINS", "not-installed-anywhere")
    with pytest.raises(PluginError, match="ALPOLICY_LOAD_PLUGINS names 'not-installed-anywhere', which is not installed"):
        make_plugin_manager()


def test_load_plugins_env_empty_loads_only_builtins(monkeypatch):
    monkeypatch.setenv("ALPOLICY_LOAD_PLUGINS", "")
    registry = build_registry(make_plugin_manager())
    assert set(registry.plugins) == set(DEFAULT_PLUGINS)
