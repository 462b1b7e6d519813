"""The image package: old public names import from it, nothing drags in matplotlib, no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from energyflow.domains import image

PACKAGE = Path(image.__file__).parent
MODULES = ("data", "networks", "classifier", "domain")


def test_public_names_are_re_exported():
    from energyflow.domains.image import (  # noqa: F401  (the import is the test)
        CIFAR10_DIRNAME,
        ConvPotential,
        ImageDomain,
        cifar10_potential,
        classifier_frechet_distance,
        get_digit_classifier,
        load_cifar10,
        load_digits_split,
    )

    assert set(image.__all__) <= set(dir(image))
    assert image.ImageDomain.__module__ == "energyflow.domains.image.domain"
    assert image.load_digits_split.__module__ == "energyflow.domains.image.data"


@pytest.mark.parametrize("module", ("energyflow.domains.image", *(f"energyflow.domains.image.{m}" for m in MODULES)))
def test_import_alone_without_matplotlib(module):
    """Each module imports first in a fresh interpreter (a cycle would fail one of them)."""
    code = f"import sys, {module}; bad = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'); print(bad)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _package_imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(imported energyflow.domains.image module, whether the import is inside a function)."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("energyflow.domains.image"):
                found.append((child.module, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def test_modules_import_each_other_in_one_direction_at_module_level():
    order = {name: i for i, name in enumerate(MODULES)}
    for name in MODULES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for module, in_function in _package_imports(tree):
            assert not in_function, f"{name}.py imports {module} inside a function"
            target = module.rsplit(".", 1)[1]
            assert target in order and order[target] < order[name], f"{name}.py imports {module}"
    # the classifier trains on the data module's split; the domain uses the classifier
    assert ("energyflow.domains.image.data", False) in _package_imports(ast.parse((PACKAGE / "classifier.py").read_text()))
    assert ("energyflow.domains.image.classifier", False) in _package_imports(ast.parse((PACKAGE / "domain.py").read_text()))


def test_old_module_paths_are_gone():
    for old in ("image_nets", "digit_classifier"):
        assert not (PACKAGE.parent / f"{old}.py").exists()
    from energyflow.registry import NETWORKS

    assert NETWORKS.get("unet_vit") is image.cifar10_potential
