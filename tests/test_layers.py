"""The layer contract in pyproject.toml: the engine never imports Kubernetes, kopf or HTTP code."""
import pathlib
import subprocess
import sys


def test_import_contracts_hold(root):
    lint = pathlib.Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 1 kept, 0 broken" in out.stdout


def test_operator_dir_is_a_source_root_not_a_package(root):
    # A regular package named `operator` would shadow the standard library module.
    assert not (root / "operator" / "__init__.py").exists()


def test_no_unused_imports_or_undefined_names(root):
    ruff = pathlib.Path(sys.executable).parent / "ruff"
    out = subprocess.run([str(ruff), "check", "--select", "F,E9", "operator", "tests", "benchmarks"],
                         cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
