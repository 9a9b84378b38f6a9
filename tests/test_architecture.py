"""The package's shape holds: layers, no import cycle, no module using another's private names.

The layers and cycles are import-linter contracts (``.importlinter``; function-local imports
count); private names are checked here on the syntax tree.
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "include" / "tuneops"


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint_imports), "--config", str(REPO / ".importlinter")], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in proc.stdout


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private_uses(path: Path, own: str = "") -> list[str]:
    """``from tuneops.x import _name`` and ``module._name`` on an imported tuneops module."""
    tree = ast.parse(path.read_text())
    found, modules = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tuneops"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                elif (PACKAGE.parent / (node.module or "").replace(".", "/") / f"{alias.name}.py").exists():
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tuneops") and alias.name != own:
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    files = [*PACKAGE.rglob("*.py"), *(REPO / "dags").glob("*.py"), *(REPO / "bench").glob("*.py")]
    found = [
        use
        for path in files
        for use in _private_uses(path, _module_name(path) if PACKAGE in path.parents else "")
    ]
    assert not found, found


def test_the_private_name_check_catches_both_forms(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from tuneops.core.store import _secret\nfrom tuneops.core import store\nstore._s3_key('x')\n"
    )
    uses = _private_uses(sample)
    assert any("_secret" in u for u in uses) and any("store._s3_key" in u for u in uses)
