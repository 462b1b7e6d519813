"""The scripts outside the package (benchmarks, examples) compile on the running Python.

The package's own modules are imported by their tests; these scripts are run by hand, so a
syntax only newer Pythons accept (e.g. reusing the outer quote inside an f-string, 3.12+)
would reach users on 3.10/3.11 unnoticed without this check.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p for d in ("benchmarks", "examples") for p in (ROOT / d).rglob("*.py"))


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) > 5


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_compiles(path):
    compile(path.read_text(encoding="utf-8"), str(path), "exec")
