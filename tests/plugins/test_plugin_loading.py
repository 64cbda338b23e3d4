"""Plugins found through real installed distributions: entry points, clashes, broken and disabled plugins.

Each third-party package here is a real distribution written into a folder on ``sys.path``: its
module and a ``<package>.dist-info`` with ``METADATA`` and ``entry_points.txt``, so
``importlib.metadata`` finds it exactly as it finds a pip-installed one.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from helpers import REPO
from seva_plugin import plugin_manager
from seva_plugin.commands.cli import main, parse_args
from seva_plugin.errors import ConfigError
from seva_plugin.plugin_manager import BUILTIN_PLUGINS, DISABLE_ENV, GROUP, entry_points, get_plugin_manager, make_plugin_manager
from seva_plugin.registry import Registry, get_registry

FILTER = """
from dataclasses import dataclass
from seva_plugin import Filter, hookimpl

@dataclass
class Keep(Filter):
    name = {name!r}

    def __call__(self, pair):
        return None

@hookimpl
def {hook}(register):
    register(Keep)
"""


def install(site, package: str, plugins: dict[str, str], modules: dict[str, str]) -> None:
    """A distribution ``package`` in ``site``: the ``modules`` (name -> source) and a dist-info whose
    entry_points.txt declares ``plugins`` (entry-point name -> module) in the ``seva_plugin`` group."""
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{package.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{name} = {module}\n" for name, module in plugins.items()))
    importlib.invalidate_caches()


def keep_filter(name: str, hook: str = "register_filters") -> str:
    return FILTER.format(name=name, hook=hook)


def install_troubles(site) -> None:
    """Two packages registering filter 'x', two declaring entry point 'blur', one that cannot import,
    one with a misspelled hook."""
    install(site, "seva-a", {"a": "seva_a"}, {"seva_a": keep_filter("x")})
    install(site, "seva-b", {"b": "seva_b"}, {"seva_b": keep_filter("x")})
    install(site, "seva-blur-one", {"blur": "seva_blur_one"}, {"seva_blur_one": keep_filter("blur_one")})
    install(site, "seva-blur-two", {"blur": "seva_blur_two"}, {"seva_blur_two": keep_filter("blur_two")})
    install(site, "seva-broken", {"broken": "seva_broken"}, {"seva_broken": "import a_module_nobody_installed\n"})
    install(site, "seva-typo", {"typo": "seva_typo"}, {"seva_typo": keep_filter("typo", hook="register_filter")})


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on ``sys.path`` to install distributions into; the process's plugin manager is rebuilt around the test."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv(DISABLE_ENV, "")
    get_plugin_manager.cache_clear()
    get_registry.cache_clear()
    yield path
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(path)):
            del sys.modules[name]
    get_plugin_manager.cache_clear()
    get_registry.cache_clear()


def states(registry: Registry) -> dict[tuple[str, str | None], tuple[str, str]]:
    return {(p.name, p.package): (p.state, p.problem) for p in registry.plugins}


# -- the built-ins are entry points ---------------------------------------------------------------
def pyproject_entry_points() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]["entry-points"][GROUP]


def test_the_builtins_load_through_the_packages_own_entry_points():
    declared = pyproject_entry_points()
    installed = {ep.name: ep.value for ep in importlib.metadata.distribution("seva-plugin").entry_points.select(group=GROUP)}
    assert installed == declared, "the installed metadata is stale: pip install -e . (or setup.py egg_info) again"
    builtins = [(ep, package) for ep, package in entry_points(third_party=False)]
    assert {ep.name for ep, _ in builtins} == set(declared)
    assert all(package == "seva-plugin" and ep.dist is not None for ep, package in builtins)  # from the metadata, not the fallback
    registry = Registry(make_plugin_manager(third_party=False))
    assert {(p.name, p.package, p.state) for p in registry.plugins} == {(name, "seva-plugin", "loaded") for name in declared}


def test_the_fallback_list_is_the_entry_points_pyproject_declares():
    assert {module: module for module in BUILTIN_PLUGINS} == pyproject_entry_points()


def test_without_package_metadata_the_fallback_loads_the_same_builtins(monkeypatch):
    """A source tree run without install: no metadata names seva-plugin."""
    real = importlib.metadata.distributions
    monkeypatch.setattr(plugin_manager, "distributions", lambda: [d for d in real() if d.metadata["Name"] != "seva-plugin"])
    fallback = Registry(make_plugin_manager(third_party=False))
    monkeypatch.undo()
    installed = Registry(make_plugin_manager(third_party=False))
    assert [(c.kind, c.name, c.plugin, c.origin.package) for c in fallback] == [(c.kind, c.name, c.plugin, c.origin.package) for c in installed]
    assert len(list(fallback)) >= 14


# -- clashes ----------------------------------------------------------------------------------------
def test_a_component_two_packages_register_is_refused_only_when_used_naming_both(site):
    install(site, "seva-a", {"a": "seva_a"}, {"seva_a": keep_filter("x")})
    install(site, "seva-b", {"b": "seva_b"}, {"seva_b": keep_filter("x")})
    registry = Registry(make_plugin_manager())
    assert registry.get("filter", "empty").plugin == "seva_plugin.plugins.filters.answers"  # the rest work
    with pytest.raises(ConfigError, match=r"filter 'x' is registered by plugin 'a' \(package seva-a\) and by plugin 'b' \(package seva-b\)"):
        registry.get("filter", "x")
    clashing = [c for c in registry if c.name == "x"]
    assert [c.origin.package for c in clashing] == ["seva-a", "seva-b"]
    assert [registry.note(c) for c in clashing] == [
        "clash: also registered by plugin 'b' (package seva-b)",
        "clash: also registered by plugin 'a' (package seva-a)",
    ]


def test_an_entry_point_name_two_packages_declare_loads_both_and_refuses_their_components_naming_both(site):
    install(site, "seva-blur-one", {"blur": "seva_blur_one"}, {"seva_blur_one": keep_filter("blur_one")})
    install(site, "seva-blur-two", {"blur": "seva_blur_two"}, {"seva_blur_two": keep_filter("blur_two")})
    registry = Registry(make_plugin_manager())
    for name in ("blur_one", "blur_two"):  # neither vanishes into "unknown filter"
        with pytest.raises(
            ConfigError, match=f"filter '{name}' comes from plugin 'blur'.*packages seva-blur-one and seva-blur-two both declare the entry point 'blur'"
        ):
            registry.get("filter", name)
    assert registry.get("filter", "identical")  # the rest work
    assert states(registry)[("blur", "seva-blur-two")][0] == "clash"
    assert all(registry.note(c).startswith("clash: packages seva-blur-one and seva-blur-two") for c in registry if c.name.startswith("blur_"))


def test_one_package_seen_twice_on_the_path_is_one_plugin(site, tmp_path, monkeypatch):
    """An editable install and a checkout's own metadata, say: the first on sys.path counts."""
    other = tmp_path / "other_site"
    other.mkdir()
    monkeypatch.syspath_prepend(str(other))
    install(site, "seva-dup", {"dup": "seva_dup"}, {"seva_dup": keep_filter("dup")})
    install(other, "seva_dup", {"dup": "seva_dup"}, {})
    registry = Registry(make_plugin_manager())
    assert states(registry)[("dup", "seva_dup")] == ("loaded", "")
    assert registry.get("filter", "dup").origin.package == "seva_dup"


# -- broken plugins -------------------------------------------------------------------------------
def test_a_plugin_that_fails_to_import_is_named_with_its_error_and_the_rest_work(site, capsys):
    install(site, "seva-broken", {"broken": "seva_broken"}, {"seva_broken": "import a_module_nobody_installed\n"})
    registry = get_registry()
    problem = "ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    assert states(registry)[("broken", "seva-broken")] == ("broken", problem)
    assert capsys.readouterr().err == f"seva: warning: plugin 'broken' (package seva-broken) is left out: {problem}\n"
    assert registry.get("backend", "hf")
    with pytest.raises(ConfigError, match=f"unknown filter 'blur'.*Left out, so not searched: plugin 'broken' \\(package seva-broken\\): {problem}"):
        registry.get("filter", "blur")


def test_a_misspelled_hook_is_one_line_naming_the_plugin_and_the_hook(site, capsys):
    install(site, "seva-typo", {"typo": "seva_typo"}, {"seva_typo": keep_filter("typo", hook="register_filter")})
    registry = get_registry()
    line = "seva: warning: plugin 'typo' (package seva-typo) is left out: it implements register_filter, which is not a seva_plugin hook. "
    assert capsys.readouterr().err == line + "Did you mean 'register_filters'?\n"
    assert registry.get("filter", "empty")


def test_a_hook_with_the_wrong_arguments_is_one_line_naming_the_hook(site):
    install(site, "seva-args", {"args": "seva_args"}, {"seva_args": keep_filter("args").replace("(register)", "(reg)")})
    state, problem = states(Registry(make_plugin_manager()))[("args", "seva-args")]
    assert state == "broken" and "\n" not in problem
    assert problem.startswith("PluginValidationError: Plugin 'args' for hook 'register_filters'") and "{'reg'}" in problem


# -- disabling ------------------------------------------------------------------------------------
def test_seva_disable_plugins_turns_off_third_party_and_builtin_plugins_unimported(site, monkeypatch, capsys):
    install(site, "seva-broken", {"broken": "seva_broken"}, {"seva_broken": "import a_module_nobody_installed\n"})
    monkeypatch.setenv(DISABLE_ENV, "seva_plugin.plugins.backends.vllm, broken")
    registry = get_registry()
    assert capsys.readouterr().err == ""  # a broken plugin turned off is not even imported
    assert states(registry)[("broken", "seva-broken")][0] == "disabled"
    assert registry.get("backend", "hf")
    turned_off = "plugin 'seva_plugin.plugins.backends.vllm' (package seva-plugin): turned off by SEVA_DISABLE_PLUGINS or --disable-plugin"
    with pytest.raises(ConfigError, match=f"unknown backend 'vllm'.*{re.escape(turned_off)}"):
        registry.get("backend", "vllm")


def test_disabling_a_plugin_nobody_has_is_an_error_with_a_suggestion(site, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "seva_plugin.plugins.backend.vllm")
    with pytest.raises(ConfigError, match=r"unknown plugin 'seva_plugin.plugins.backend.vllm' in SEVA_DISABLE_PLUGINS.*'seva_plugin.plugins.backends.vllm'"):
        get_plugin_manager()


def listing(out: str) -> tuple[list[list[str]], dict[tuple[str, str], str]]:
    """``seva plugins``'s two tables: component rows (kind, name, plugin, note) and each plugin's state by (plugin, package)."""
    components, plugins = out.split("\n\n")
    rows = [line.split(maxsplit=3) for line in components.splitlines()[1:]]
    return rows, {(row[0], row[1]): row[2] for row in (line.split(maxsplit=2) for line in plugins.splitlines()[1:])}


def test_disable_plugin_is_a_repeatable_top_level_option(site, capsys):
    install_troubles(site)
    assert parse_args(["--disable-plugin", "a", "--disable-plugin", "blur", "plugins"]).disable_plugin == ["a", "blur"]
    assert main(["--disable-plugin", "a", "--disable-plugin", "blur", "plugins"]) == 0
    rows, plugins = listing(capsys.readouterr().out)
    assert [row for row in rows if row[1] == "x"] == [["filter", "x", "b"]]  # no clash once 'a' is off
    assert not [row for row in rows if row[1].startswith("blur_")]
    for plugin, package in (("a", "seva-a"), ("blur", "seva-blur-one"), ("blur", "seva-blur-two")):
        assert plugins[(plugin, package)] == "disabled: turned off by SEVA_DISABLE_PLUGINS or --disable-plugin"


# -- seva plugins ---------------------------------------------------------------------------------
def test_seva_plugins_lists_everything_and_marks_clashes_and_broken_plugins(site, capsys):
    install_troubles(site)
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # the listing shows the problems; no warnings besides
    rows, plugins = listing(out)
    assert ["filter", "x", "a", "clash: also registered by plugin 'b' (package seva-b)"] in rows
    assert ["filter", "x", "b", "clash: also registered by plugin 'a' (package seva-a)"] in rows
    assert ["filter", "blur_two", "blur", "clash: packages seva-blur-one and seva-blur-two both declare the entry point 'blur'"] in rows
    assert ["backend", "hf", "seva_plugin.plugins.backends.hf"] in rows
    assert plugins[("seva_plugin.plugins.backends.hf", "seva-plugin")] == "loaded"
    assert plugins[("blur", "seva-blur-one")] == "clash: packages seva-blur-one and seva-blur-two both declare the entry point 'blur'"
    assert plugins[("broken", "seva-broken")] == "broken: ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    assert plugins[("typo", "seva-typo")].startswith("broken: it implements register_filter, which is not a seva_plugin hook.")


# -- the whole command line, in a fresh interpreter -------------------------------------------------
@pytest.mark.slow
def test_builds_not_using_a_clash_or_a_broken_plugin_work_and_one_using_it_fails_in_one_line(build_config, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_troubles(site)
    configs = {}
    for name, filters in (("plain", []), ("uses_x", ["x"])):  # keep every pair: a build that keeps none exits 2
        cfg = {**build_config, "filters": filters, "limit": 4, "output": {**build_config["output"], "name": name}}
        configs[name] = str(tmp_path / f"{name}.yaml")
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    commands = [
        ["build", configs["plain"], "--no-progress"],
        ["build", configs["uses_x"], "--no-progress"],
        ["--disable-plugin", "b", "build", configs["uses_x"], "--no-progress"],
    ]
    code = (
        "import json, sys\nfrom seva_plugin.commands.cli import main\n"
        "for args in json.loads(sys.argv[1]):\n    print('exit', main(args), file=sys.stderr, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", REPO)]), "OMP_NUM_THREADS": "1"}
    env.pop(DISABLE_ENV, None)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith(("seva:", "error:", "exit", "Traceback"))]
    assert lines == [
        "seva: warning: plugin 'broken' (package seva-broken) is left out: ModuleNotFoundError: No module named 'a_module_nobody_installed'",
        "seva: warning: plugin 'typo' (package seva-typo) is left out: it implements register_filter, which is not a seva_plugin hook. "
        "Did you mean 'register_filters'?",
        "exit 0",
        "error: filter 'x' is registered by plugin 'a' (package seva-a) and by plugin 'b' (package seva-b). Uninstall one of the packages, "
        "or turn one plugin off: SEVA_DISABLE_PLUGINS=<plugin> or seva --disable-plugin <plugin>.",
        "exit 2",
        "seva: warning: plugin 'broken' (package seva-broken) is left out: ModuleNotFoundError: No module named 'a_module_nobody_installed'",
        "seva: warning: plugin 'typo' (package seva-typo) is left out: it implements register_filter, which is not a seva_plugin hook. "
        "Did you mean 'register_filters'?",
        "exit 0",
    ]
    for name in ("plain", "uses_x"):
        assert json.loads((tmp_path / "data" / f"{name}.manifest.json").read_text())["counts"]["records"] == 4
