"""The layout the project promises: four scripts that each read in one sitting, run management in one module."""
import ast
import os

import pytest

from tests.conftest import ROOT, SCRIPTS

MODULE = "ppo_run"


def tree(name):
    return ast.parse(open(os.path.join(ROOT, f"{name}.py")).read())


def main_of(name):
    (main,) = [node for node in tree(name).body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    return main


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_keeps_its_budget(name):
    assert len(open(os.path.join(ROOT, f"{name}.py")).read().splitlines()) <= 620
    main = main_of(name)
    assert main.end_lineno - main.lineno + 1 <= 140


def test_the_run_module_keeps_its_budget():
    assert len(open(os.path.join(ROOT, f"{MODULE}.py")).read().splitlines()) <= 260


@pytest.mark.parametrize("name", [*SCRIPTS, MODULE])
def test_no_file_imports_a_script(name):
    imports = [node for node in ast.walk(tree(name)) if isinstance(node, (ast.Import, ast.ImportFrom))]
    imported = {alias.name.split(".")[0] for node in imports
                for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert not imported & set(SCRIPTS), imported & set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_main_meets_run_management_at_four_places(name):
    """The run is made once, then three of its methods are called: start, end_iteration and finish."""
    calls = [node.func.attr for node in ast.walk(main_of(name)) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
             and node.func.value.id == "run"]
    made = [node for node in ast.walk(main_of(name)) if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "run" for t in node.targets)]
    assert sorted(calls) == ["end_iteration", "finish", "start"] and len(made) == 1


def test_the_front_page_stays_short():
    assert len(open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()) <= 12_000
