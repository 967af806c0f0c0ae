"""The layout reads like the data flow, and no module imports from a layer above its own (#13).

Every module under ``alpolicy/`` is parsed with :mod:`ast`; every import of alpolicy code it
holds (absolute or relative, at the top or inside a function, under ``TYPE_CHECKING`` too: a
type a rule names is a dependency all the same) must name a module of its own layer or below.
The layers, from the bottom:

0. ``errors``, ``io`` (images, HTTP, secrets, checks, strict JSON), ``_compat`` (0.1's paths):
   services every layer uses; they know nothing of policies.
1. ``registry`` (what plugins register: specs, the read-only registry), ``bases`` (the base class
   every plugin kind shares) and ``hookspecs`` (the hooks): the plugin *contract*, plain data
   with no behaviour, which the policy compiles against.
2. ``policy``: what a policy is -- engine, predictions, decisions, validation, the rule base
   classes and the usage-counter protocol sampling rules read.
3. ``pixels``, ``rules``, ``formats`` (interchange formats, prediction ⇄ document, pure) and
   ``plugin_options`` (validating a plugin's options against its JSON
   Schema: it needs ``policy.validation``'s error paths, and plugins need it).
4. ``backends``, ``destinations``, ``sources``: the built-in plugins. They never import the run
   machinery, the report or the CLI.
5. ``plugins``: the plugin manager, which loads the built-ins and entry points (by name).
6. ``runtime``: how a run happens, orchestrating the plugins.
7. ``report``: reads what a run wrote; ``evaluation`` (``alpolicy evaluate``) measures policies
   against ground truth from the same journal, beside it.
8. ``cli``, ``sdk``, ``testing``, ``__main__``: the entry points, at the top.

The root package ``alpolicy/__init__.py`` is the public facade above everything; a module may
read only its constants (:data:`ROOT_CONSTANTS`, defined before its first import), not its code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import alpolicy

PACKAGE = Path(alpolicy.__file__).resolve().parent

#: The layers, bottom first: a module may import its own layer or a lower one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "_compat"),
    ("registry", "bases", "hookspecs"),
    ("policy",),
    ("pixels", "rules", "formats", "plugin_options"),
    ("backends", "destinations", "sources"),
    ("plugins",),
    ("runtime",),
    ("report", "evaluation"),
    ("cli", "sdk", "testing", "__main__"),
)
LEVEL = {component: level for level, components in enumerate(LAYERS) for component in components}
ROOT_LEVEL = len(LAYERS)
#: Names of the root package any module may import: constants set before its first import.
ROOT_CONSTANTS = frozenset({"__version__"})
#: The modules allowed loose at the top of alpolicy/ (besides __init__ and __main__): at most 8.
LOOSE = {"hookspecs", "plugins", "registry", "errors", "bases", "sdk", "plugin_options", "_compat"}


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported alpolicy module or ``alpolicy.<root name>``) for every import in ``source``."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "alpolicy"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "alpolicy":
                continue
            if target == "alpolicy":  # from alpolicy import X / from .. import X: X a module or a root name
                found += [(node.lineno, f"alpolicy.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
    return found


def level_of(module: str, root: Path) -> int:
    """The layer of a module (``alpolicy.io.images`` -> ``io``'s); the root package, and a name
    imported from it (``from alpolicy import run``), are above all."""
    parts = module.split(".")
    if len(parts) == 1 or not ((root / f"{parts[1]}.py").is_file() or (root / parts[1]).is_dir()):
        return ROOT_LEVEL
    if parts[1] not in LEVEL:
        raise KeyError(f"{module}: its component {parts[1]!r} has no layer in LAYERS")
    return LEVEL[parts[1]]


def is_root_constant(target: str) -> bool:
    parts = target.split(".")
    return len(parts) == 2 and parts[1] in ROOT_CONSTANTS


def violations(sources: dict[str, tuple[str, bool]], root: Path) -> list[str]:
    """Every import of ``sources`` (module name -> (source, is package)) that goes up a layer."""
    found = []
    for name, (source, is_package) in sorted(sources.items()):
        own = level_of(name, root)
        for line, target in imports(source, name, is_package):
            if is_root_constant(target):
                continue
            if level_of(target, root) > own:
                found.append(f"{name}:{line} imports {target} (layer {level_of(target, root)} above {own})")
    return found


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    sources = {}
    for path in sorted(root.rglob("*.py")):
        name, is_package = module_name(path, root)
        sources[name] = (path.read_text(encoding="utf-8"), is_package)
    return sources


def test_no_module_imports_from_a_layer_above_its_own():
    assert violations(package_sources(), PACKAGE) == []


def test_every_module_has_a_layer():
    for name in package_sources():
        level_of(name, PACKAGE)  # raises for a component LAYERS does not place


def test_the_check_sees_an_upward_import_anywhere(tmp_path):
    """The test above can fail: a rule importing the pipeline, even inside a function or under
    TYPE_CHECKING, absolute or relative, is reported with its line."""
    sources = {
        "alpolicy.rules.bad": ("def f():\n    from ..runtime.pipeline import run\n", False),
        "alpolicy.rules.worse": ("import typing\nif typing.TYPE_CHECKING:\n    import alpolicy.cli\n", False),
        "alpolicy.io.up": ("from .. import registry\n", False),
        "alpolicy.destinations.facade": ("from alpolicy import run\n", False),
        "alpolicy.destinations.fine": ("from .. import __version__\nfrom ..io.images import ImageFile\n", False),
    }
    assert violations(sources, PACKAGE) == [
        "alpolicy.destinations.facade:1 imports alpolicy.run (layer 9 above 4)",
        "alpolicy.io.up:1 imports alpolicy.registry (layer 1 above 0)",
        "alpolicy.rules.bad:2 imports alpolicy.runtime.pipeline (layer 6 above 3)",
        "alpolicy.rules.worse:3 imports alpolicy.cli (layer 8 above 3)",
    ]


def test_at_most_eight_modules_stay_loose_at_the_top():
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert loose == LOOSE and len(loose) <= 8


@pytest.mark.parametrize("package", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_every_package_says_in_its_docstring_what_belongs_there(package):
    docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
    assert docstring and len(docstring) > 60, f"alpolicy/{package}/__init__.py needs a docstring saying what belongs there"


def _architecture_section() -> str:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Architecture\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_architecture_section_is_the_map():
    """Every path it names exists, and it names every package and loose module."""
    section = _architecture_section()
    named = set(re.findall(r"`(alpolicy/[\w/.]+)`", section))
    missing = sorted(path for path in named if not (PACKAGE.parent / path).exists())
    assert missing == []
    for package in sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")):
        assert f"`alpolicy/{package}/`" in section, package
    for module in LOOSE:
        assert f"`alpolicy/{module}.py`" in section, module
    for layer in LAYERS:
        for component in layer:
            assert component in section, component
