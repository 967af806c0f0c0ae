"""The old module paths of alpolicy 0.1, kept importable after the layout by concern (#13).

0.1 kept 25 modules side by side in ``alpolicy/``; they now live in packages that read like the
data flow (``io``, ``policy``, ``pixels``, ``runtime``, ``report``). A plugin written against 0.1
imports e.g. ``alpolicy.images``: :data:`MOVED` maps every old module name to its new one, and
:class:`MovedModuleFinder` (installed on ``sys.meta_path`` by ``alpolicy/__init__.py``) answers an
import of an old name with the new module itself -- ``sys.modules[old] is sys.modules[new]`` -- so
classes are identical, ``isinstance`` holds and monkeypatching either name patches both. Each old
name warns once per process (a :class:`DeprecationWarning` naming where it moved), pointed at the
importing line. One mechanism, one table: adding a move means adding a row here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import warnings
from types import ModuleType

#: Old module name (alpolicy 0.1) -> where it lives now.
MOVED: dict[str, str] = {
    "alpolicy.prediction": "alpolicy.policy.prediction",
    "alpolicy.decision": "alpolicy.policy.decision",
    "alpolicy.validation": "alpolicy.policy.validation",
    "alpolicy.conditionals": "alpolicy.policy.conditionals",
    "alpolicy.inference_config": "alpolicy.policy.inference_config",
    "alpolicy.policy_json": "alpolicy.policy.policy_json",
    "alpolicy.images": "alpolicy.io.images",
    "alpolicy.http": "alpolicy.io.http",
    "alpolicy.secrets": "alpolicy.io.secrets",
    "alpolicy.checks": "alpolicy.io.checks",
    "alpolicy.jsonsafe": "alpolicy.io.jsonsafe",
    "alpolicy.pipeline": "alpolicy.runtime.pipeline",
    "alpolicy.journal": "alpolicy.runtime.journal",
    "alpolicy.journal_lock": "alpolicy.runtime.journal_lock",
    "alpolicy.sampler": "alpolicy.runtime.sampler",
    "alpolicy.progress": "alpolicy.runtime.progress",
    "alpolicy.run_report": "alpolicy.runtime.run_report",
    "alpolicy.imagehash": "alpolicy.pixels.imagehash",
    "alpolicy.hashindex": "alpolicy.pixels.hashindex",
    "alpolicy.quality": "alpolicy.pixels.quality",
    "alpolicy.html_report": "alpolicy.report.html",
    "alpolicy.svg": "alpolicy.report.svg",
    "alpolicy.whatif": "alpolicy.report.whatif",
    "alpolicy.markup": "alpolicy.report.markup",
}
# ``alpolicy.policy`` (0.1: the module of ``Policy``) is now the package of the policy core; it
# re-exports ``Policy``, so the old name still works and needs no row (the engine is
# ``alpolicy.policy.engine``).

#: Frames a warning must not point at: the import machinery, this module and ``alpolicy.__getattr__``.
_SKIP = ("<frozen importlib", __file__, importlib.__file__, os.path.join(os.path.dirname(__file__), "__init__.py"))


def message(old: str) -> str:
    return f"{old} moved to {MOVED[old]}; import from there (or from alpolicy)"


def warn_moved(old: str) -> None:
    """Warn that ``old`` moved, at the first frame outside the import machinery (the importer)."""
    warnings.warn(message(old), DeprecationWarning, stacklevel=_importer_level(_SKIP))


def _importer_level(skip: tuple[str, ...]) -> int:
    """The ``stacklevel`` of the first frame not in ``skip``. The warnings module itself skips the
    frozen importlib frames without counting them, so they are not counted here either."""
    frame, level = sys._getframe(2), 2  # stacklevel 2 = warn_moved's caller
    while frame is not None and frame.f_code.co_filename.startswith(skip):
        if not _internal(frame.f_code.co_filename):
            level += 1
        frame = frame.f_back
    return level


def _internal(filename: str) -> bool:
    return "importlib" in filename and "_bootstrap" in filename  # as warnings._is_internal_frame


class _AliasLoader(importlib.abc.Loader):
    """Loads an old name as the new module object (no second copy, no second execution)."""

    def __init__(self, old: str) -> None:
        self.old = old

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[self.old])
        self.own_spec = module.__spec__
        warn_moved(self.old)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (the new module was executed once, under its own name); only give it
        back its own ``__spec__``, which the import system has just set to the alias's."""
        module.__spec__ = self.own_spec


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old module names of :data:`MOVED` (and only those)."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(fullname))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (importing alpolicy twice adds nothing)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())


def moved_attribute(package: ModuleType, name: str) -> ModuleType:
    """``alpolicy.images`` as an attribute (0.1's ``alpolicy/__init__`` imported the modules, so
    ``import alpolicy; alpolicy.pipeline.X`` worked): import the old name, with its warning."""
    old = f"{package.__name__}.{name}"
    if old not in MOVED:
        raise AttributeError(f"module {package.__name__!r} has no attribute {name!r}")
    return importlib.import_module(old)


#: Names that moved out of a module that still exists: (old module, name) -> new module.
MOVED_NAMES: dict[tuple[str, str], str] = {
    **{("alpolicy.rules.base", name): "alpolicy.policy.rule"
       for name in ("DetectionRule", "ImageRule", "ParameterError", "SamplingRule")},
    # 0.1's module alpolicy.policy is now the package; its ``Policy`` is re-exported (no warning),
    # the rest of what that module defined is read from the engine.
    **{("alpolicy.policy", name): "alpolicy.policy.engine"
       for name in ("POLICY_VERSION", "DEFAULT_IMAGE_NODE", "Leaf", "AllNode", "AnyNode", "NotNode")},
}


def name_message(module: str, name: str) -> str:
    new = MOVED_NAMES[(module, name)]
    return f"{module}.{name} moved to {new}.{name}; import it from there (or from alpolicy)"


def moved_name(module: str, name: str) -> object:
    """A module ``__getattr__`` for :data:`MOVED_NAMES`: the object from its new module, with a
    DeprecationWarning naming it (an unknown name stays an AttributeError)."""
    if (module, name) not in MOVED_NAMES:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(name_message(module, name), DeprecationWarning, stacklevel=_importer_level(_SKIP) + 1)
    return getattr(importlib.import_module(MOVED_NAMES[(module, name)]), name)
