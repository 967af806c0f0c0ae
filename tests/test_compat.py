"""alpolicy 0.1's import paths keep working after the layout by concern (issue #13).

Every old module name of :data:`alpolicy._compat.MOVED` imports, warns once with the new name,
and *is* the new module (so classes are identical and monkeypatching one name patches both).
The 0.1 example rule plugin, copied verbatim from git (``tests/fixtures/plugin-0.1``), installs
with pip and passes its own tests against this layout.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import alpolicy
from alpolicy._compat import MOVED, MOVED_NAMES

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "plugin-0.1"


def _forget(old: str) -> None:
    """Make the next import of ``old`` go through the finder again (as in a fresh process)."""
    sys.modules.pop(old, None)
    package, _, leaf = old.rpartition(".")
    vars(sys.modules[package]).pop(leaf, None)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_module_path_imports_warns_once_and_is_the_new_module(old):
    _forget(old)
    new = importlib.import_module(MOVED[old])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
        again = importlib.import_module(old)
    moved = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert [str(w.message) for w in moved] == [f"{old} moved to {MOVED[old]}; import from there (or from alpolicy)"]
    assert module is new and again is new and sys.modules[old] is new
    assert new.__name__ == MOVED[old] and new.__spec__.name == MOVED[old]  # the alias leaves it its own identity


@pytest.mark.parametrize("old, name", sorted(MOVED_NAMES))
def test_every_name_that_moved_out_of_a_module_still_reads_with_a_warning(old, name):
    new = importlib.import_module(MOVED_NAMES[(old, name)])
    module = importlib.import_module(old)
    assert name not in vars(module)  # really moved: not a second definition
    with pytest.warns(DeprecationWarning, match=rf"^{old}\.{name} moved to {MOVED_NAMES[(old, name)]}\.{name}; "):
        value = getattr(module, name)
    assert value is getattr(new, name) is getattr(alpolicy, name, value)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_the_table_names_only_modules_that_are_gone_and_targets_that_exist():
    root = Path(alpolicy.__file__).parent
    for old, new in MOVED.items():
        assert not (root / (old.split(".", 1)[1].replace(".", "/") + ".py")).exists(), old
        assert (root.parent / (new.replace(".", "/") + ".py")).is_file(), new


def test_the_warning_points_at_the_importing_line(tmp_path):
    script = tmp_path / "old_plugin.py"
    script.write_text("import warnings\nwarnings.simplefilter('always')\nfrom alpolicy.images import ImageFile\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{script}:3: DeprecationWarning: alpolicy.images moved to alpolicy.io.images" in result.stderr


def test_the_old_import_lines_of_the_issue_work_and_give_the_same_classes():
    code = textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")  # the names that did not move must not warn
        from alpolicy.backends import ImageError
        from alpolicy.destinations import Delivery, PermanentError, Receipt
        from alpolicy.policy import Policy
        warnings.simplefilter("ignore")
        from alpolicy.images import ImageFile, ImageDecodeError
        from alpolicy.prediction import Detection
        from alpolicy import pipeline
        import alpolicy, alpolicy.io.images as images
        assert ImageFile is alpolicy.ImageFile is images.ImageFile and ImageDecodeError is alpolicy.ImageDecodeError
        assert ImageError is alpolicy.ImageError and Delivery is alpolicy.Delivery and Receipt is alpolicy.Receipt
        assert PermanentError is alpolicy.PermanentError and Policy is alpolicy.Policy
        assert Detection is alpolicy.Detection and pipeline.run is alpolicy.run
        assert alpolicy.journal is __import__("alpolicy.runtime.journal").runtime.journal  # 0.1's attribute access
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_monkeypatching_the_old_name_patches_the_new_module(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("alpolicy.images")
    import alpolicy.io.images as new

    monkeypatch.setattr(old, "sha256_file", lambda path: "patched")
    assert new.sha256_file("anything") == "patched"


def test_an_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
        alpolicy.no_such_module  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("alpolicy.no_such_module")


@pytest.mark.slow
def test_a_plugin_written_against_0_1_installs_and_passes_its_own_tests(tmp_path):
    plugin = tmp_path / "plugin"
    shutil.copytree(FIXTURE, plugin)  # built and tested outside the repository (no build/ left here)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(plugin)],
                   check=True, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(plugin / "tests")],
                            capture_output=True, text=True, env=env, cwd=plugin, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and " failed" not in result.stdout
