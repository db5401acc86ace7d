"""Every third-party package our code imports is declared in pyproject.toml.

CI installs only what pyproject.toml lists; an import that works here because the package happens to be installed in
the developer's environment breaks a clean checkout (scipy once did). This test reads the imports of every module in
``benchmark``, ``baselines`` and ``objascale`` and maps each to the distribution that provides it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "baselines", "objascale")
# modules that are part of another distribution's install but not importable under its own name
PROVIDED_BY = {"bpy": "bpy", "mathutils": "bpy", "bmesh": "bpy", "OpenEXR": "openexr", "Imath": "openexr"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs.extend(extra)
    names = set()
    for spec in specs:
        name = re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0]
        names.add(name.lower().replace("_", "-"))
    return names


def _top_level_imports() -> dict[str, str]:
    """Top-level module -> first file importing it (absolute imports only)."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    found.setdefault(module.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared_in_pyproject():
    declared = _declared()
    providers = metadata.packages_distributions()
    missing = []
    for module, where in sorted(_top_level_imports().items()):
        if module in PACKAGES or module == "__future__" or module in sys.stdlib_module_names:
            continue
        dists = [PROVIDED_BY[module]] if module in PROVIDED_BY else providers.get(module)
        if not dists:
            # not installed here (an optional extra this environment lacks): the name must still be declared
            dists = [module]
        if not any(d.lower().replace("_", "-") in declared for d in dists):
            missing.append(f"{module} (imported in {where}; provided by {', '.join(dists)})")
    assert not missing, "imports not declared in pyproject.toml: " + "; ".join(missing)


def test_the_reader_of_declarations_sees_the_core_dependencies():
    declared = _declared()
    for name in ("torch", "numpy", "h5py", "scipy", "pycocotools"):
        assert name in declared
    assert "definitely-not-a-dependency" not in declared
