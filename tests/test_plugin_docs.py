"""docs/plugins.md cannot rot: its worked examples are a real project, and every hook is tested and documented.

* The code blocks that start with a file name (``# alpolicy_myplugin/backends.py``,
  ``<!-- README.md -->``) are the files of one project, ``alpolicy-myplugin``: written out as shown,
  installed with pip (tests/plugin_packages.py, as the templates), discovered through its entry
  points, its own tests run against the install, and the command line the page shows run for real.
  Every other Python block must run as it is.
* Meta-tests (after datasette's ``test_plugin_hooks_have_tests``): every hook of
  :mod:`alpolicy.hookspecs` -- found from the module, not from a list -- has a ``test_hook_<name>``
  somewhere under tests/ and a heading in the page; every public member of each kind's base
  classes and every field of its spec, options and delivery types is named in that kind's section.
  The checkers are plain functions, tested on a hook list with one hook added.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Iterable

import pytest

import alpolicy
from alpolicy import hookspecs

from .cli import alpolicy as alpolicy_cli
from .plugin_packages import pip_install, run_tests

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "plugins.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
TESTS = Path(__file__).resolve().parent

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)
_FILE_NAME = re.compile(r"\A(?:# |<!-- )([\w./-]+\.(?:py|toml|md))(?: -->)?\n")


# ---------------------------------------------------------------- reading the page
def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    return [(match.group(1), match.group(2)) for match in _BLOCK.finditer(text)]


def project_files(text: str) -> dict[str, str]:
    """The blocks that name their file on their first line: path -> content (as shown)."""
    files: dict[str, str] = {}
    for _, body in code_blocks(text):
        match = _FILE_NAME.match(body)
        if match:
            assert match.group(1) not in files, f"{match.group(1)} is shown twice"
            files[match.group(1)] = body
    return files


def snippets(text: str) -> list[str]:
    """The Python blocks that are not a file of the project: each must run on its own."""
    return [body for language, body in code_blocks(text) if language == "python" and not _FILE_NAME.match(body)]


def sections(text: str) -> dict[str, str]:
    """The text of each ``## `` section, keyed by its heading line."""
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return {parts[index]: parts[index + 1] for index in range(1, len(parts), 2)}


# ---------------------------------------------------------------- the meta-test's checkers
def hook_names(module: Any = hookspecs) -> list[str]:
    """The hooks the spec module declares: its functions marked by ``hookspec`` (pluggy's marker
    sets ``<project>_spec`` on them), not a list kept by hand."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(name for name, function in inspect.getmembers(module, inspect.isfunction) if hasattr(function, marker))


def test_names(folder: Path = TESTS) -> set[str]:
    """Every test function name defined under ``folder`` (module level or in a class)."""
    names: set[str] = set()
    for path in folder.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                names.add(node.name)
    return names


test_names.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def hooks_without_tests(hooks: Iterable[str], tests: set[str]) -> list[str]:
    return [hook for hook in hooks if f"test_hook_{hook}" not in tests]


def hook_section(hook: str, text: str) -> str | None:
    """The section whose ``## `` heading names the hook in backticks, or ``None``."""
    for heading, body in sections(text).items():
        if f"`{hook}`" in heading:
            return body
    return None


def hooks_without_docs(hooks: Iterable[str], text: str) -> list[str]:
    return [hook for hook in hooks if hook_section(hook, text) is None]


def members(cls: type) -> list[str]:
    """What a plugin author may use or must write on ``cls``: its public attributes, methods and
    properties (those of alpolicy's own bases included, ``object``'s and ``ABC``'s left out), the
    abstract ones (``__iter__``), and a dataclass's fields (less ``plugin``: the registry fills it)."""
    if dataclasses.is_dataclass(cls):
        return [field.name for field in dataclasses.fields(cls) if field.name != "plugin"]
    found = set(getattr(cls, "__abstractmethods__", ()))
    for klass in cls.__mro__:
        if klass.__module__ not in ("builtins", "abc", "typing"):
            found.update(name for name in vars(klass) if not name.startswith("_"))
    return sorted(found)


def code_spans(text: str) -> list[str]:
    """The inline code spans of ``text`` (fenced blocks left out): `` `check()` `` gives ``check()``."""
    return re.findall(r"`([^`\n]+)`", _BLOCK.sub("", text))


def named(member: str, text: str) -> bool:
    """True when ``member`` is a word of an inline code span of ``text`` (`` `check()` ``, `` `delivery.key` ``)."""
    word = re.compile(rf"(?<!\w){re.escape(member)}(?!\w)")
    return any(word.search(span) for span in code_spans(text))


def undocumented(cls: type, text: str) -> list[str]:
    return [member for member in members(cls) if not named(member, text)]


#: What each hook's section must name: the spec it registers, and the types its plugins meet.
CONTRACT: dict[str, tuple[type, ...]] = {
    "alpolicy_rules": (alpolicy.RuleSpec, alpolicy.DetectionRule, alpolicy.ImageRule, alpolicy.SamplingRule),
    "alpolicy_inference_backends": (alpolicy.InferenceBackendSpec, alpolicy.InferenceBackend, alpolicy.ModelOptions),
    "alpolicy_destinations": (alpolicy.DestinationSpec, alpolicy.Destination, alpolicy.DestinationOptions,
                              alpolicy.Delivery, alpolicy.Receipt),
    "alpolicy_sources": (alpolicy.SourceSpec, alpolicy.Source, alpolicy.SourceOptions),
    "alpolicy_executors": (alpolicy.ExecutorSpec, alpolicy.Executor, alpolicy.StatelessWork),
    "alpolicy_embedders": (alpolicy.EmbedderSpec,),
}


# ---------------------------------------------------------------- the meta-tests
def test_every_hook_has_a_test():
    hooks = hook_names()
    assert hooks, "no hooks found in alpolicy.hookspecs"
    untested = hooks_without_tests(hooks, test_names())
    assert not untested, f"hooks without a test_hook_<name> under tests/: {untested}"


def test_every_hook_has_a_section_in_the_plugin_page():
    undocumented_hooks = hooks_without_docs(hook_names(), DOC)
    assert not undocumented_hooks, f"hooks without a '## ... `hook`' heading in docs/plugins.md: {undocumented_hooks}"


@pytest.mark.parametrize("hook", hook_names())
def test_every_member_of_the_contract_is_named_in_its_section(hook):
    assert hook in CONTRACT, f"say in CONTRACT which types the {hook} section documents"
    section = hook_section(hook, DOC)
    assert section is not None
    missing = {cls.__name__: undocumented(cls, section) for cls in CONTRACT[hook]}
    assert not any(missing.values()), f"named nowhere in the {hook} section: {missing}"
    for cls in CONTRACT[hook]:
        assert named(cls.__name__, section), f"the {hook} section does not name {cls.__name__}"


def test_the_checkers_catch_a_hook_added_without_test_or_doc():
    """A new hook in hookspecs with neither a test nor a section fails both meta-tests."""
    new = "alpolicy_thumbnails"
    hooks = hook_names() + [new]
    assert hooks_without_tests(hooks, test_names()) == [new]
    assert hooks_without_docs(hooks, DOC) == [new]
    assert hooks_without_docs(hooks, DOC + f"\n## Thumbnails: `{new}`\n") == []
    assert hooks_without_tests(hooks, test_names() | {f"test_hook_{new}"}) == []


def test_the_hooks_are_found_from_the_module_not_a_list():
    class Specs:  # a stand-in module: one marked hook, one plain function
        @staticmethod
        @hookspecs.hookspec
        def alpolicy_thumbnails(register):
            """Register thumbnailers."""

        @staticmethod
        def alpolicy_helper():
            """Not a hook: not marked."""

    assert hook_names(Specs) == ["alpolicy_thumbnails"]
    assert hook_names() == sorted(name for name in vars(hookspecs) if name.startswith("alpolicy_"))


def test_the_member_checker_sees_a_new_member():
    class Backend(alpolicy.InferenceBackend):
        def warm_up(self) -> None:
            """A public method the page would have to name."""

        def predict(self, image):
            raise NotImplementedError

    section = hook_section("alpolicy_inference_backends", DOC)
    assert undocumented(Backend, section) == ["warm_up"]
    assert "__iter__" in members(alpolicy.Source) and "send" in members(alpolicy.Destination)
    assert "plugin" not in members(alpolicy.RuleSpec)


# ---------------------------------------------------------------- the page's own code
def test_every_python_block_is_a_file_of_the_example_or_runs():
    for snippet in snippets(DOC):
        exec(compile(snippet, "docs/plugins.md", "exec"), {"__name__": "docs_snippet"})
    for path, content in project_files(DOC).items():
        if path.endswith(".py"):
            compile(content, path, "exec")


def test_the_worked_examples_make_a_complete_project():
    files = project_files(DOC)
    project = tomllib.loads(files["pyproject.toml"])
    assert project["project"]["license"] == "Apache-2.0" and project["project"]["readme"] in files
    modules = project["project"]["entry-points"]["alpolicy"].values()
    for module in modules:
        assert module.replace(".", "/") + ".py" in files, module
    for kind in ("rules", "backends", "destinations", "sources"):
        assert f"tests/test_{kind}.py" in files and f"alpolicy_myplugin.{kind}" in modules
    assert {path for path in files if path.startswith("alpolicy_myplugin/")} == {
        "alpolicy_myplugin/__init__.py", *(module.replace(".", "/") + ".py" for module in modules)}


def write_project(folder: Path) -> Path:
    for path, content in project_files(DOC).items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    project = write_project(tmp_path_factory.mktemp("alpolicy-myplugin"))
    return pip_install(project, tmp_path_factory.mktemp("site"), tmp_path_factory.mktemp("build"))


@pytest.mark.slow
def test_the_plugins_on_the_page_are_discovered_through_their_entry_points(installed):
    plugins = {p["name"]: p for p in json.loads(alpolicy_cli("plugins", "--json", env=installed).out)}
    registered = {name: {key: plugins[name][key] for key in ("rules", "inference_backends", "destinations", "sources")
                         if plugins[name][key]} for name in plugins if name.startswith("myplugin-")}
    assert registered == {
        "myplugin-rules": {"rules": ["near_border", "one_per_folder"]},
        "myplugin-backends": {"inference_backends": ["fixed"]},
        "myplugin-destinations": {"destinations": ["yolo"]},
        "myplugin-sources": {"sources": ["listfile"]},
    }
    assert all(plugins[name]["distribution"] == "alpolicy-myplugin" for name in registered)


@pytest.mark.slow
def test_the_tests_on_the_page_pass_against_the_installed_example(installed, tmp_path):
    files = project_files(DOC)
    expected = sum(len(re.findall(r"^def test_", content, re.M)) for path, content in files.items()
                   if path.startswith("tests/test_"))
    result = run_tests(write_project(tmp_path / "copy") / "tests", installed, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{expected} passed" in result.stdout, result.stdout


COMMAND = """alpolicy run todo.txt --model fixed:car --to yolo:queue/ --to-opt 'classes=["car"]'"""


@pytest.mark.slow
def test_the_command_line_on_the_page_runs(installed, tmp_path):
    assert f"`{COMMAND}`" in DOC
    from alpolicy.testing import image_folder

    image_folder(tmp_path / "frames", 3)
    (tmp_path / "todo.txt").write_text("frames/frame_00000.jpg\nframes/frame_00002.jpg\n")
    args = shlex.split(COMMAND)[1:]
    args[1] = str(tmp_path / "todo.txt")  # a plain path: the listfile source claims it
    args[5] = f"yolo:{tmp_path / 'queue'}"
    result = alpolicy_cli(*args, "--journal", str(tmp_path / "journal.sqlite"), env=installed)
    assert result.code == 0, result.err
    assert len(list((tmp_path / "queue" / "labels").iterdir())) == 2
    assert (tmp_path / "queue" / "classes.txt").read_text() == "car\n"
    again = alpolicy_cli(*args[:-2], "--to-opt", "classes=car", "--journal", str(tmp_path / "j2.sqlite"), env=installed)
    assert (again.code, again.err.strip()) == (2, "alpolicy: error: --to-opt classes: 'car' is not of type 'array'")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower-case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_page_s_links_lead_somewhere():
    text = _BLOCK.sub("", DOC)
    anchors = {slug(heading) for heading in re.findall(r"^#+ (.*)$", text, re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, f"no heading for {link}"
        else:
            assert (DOC_PATH.parent / link).exists(), f"{link} does not exist"


def test_the_readme_s_plugin_sections_link_the_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for heading in ("## Write your own rule", "## Write a destination, a backend or a source"):
        section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "[docs/plugins.md](docs/plugins.md)" in section, heading
