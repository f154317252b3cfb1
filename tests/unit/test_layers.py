"""The package's layers (docs/architecture.md), enforced with import-linter.

The contracts live in pyproject.toml ([tool.importlinter]): command line > tooling > policies >
stack program > composition > targets > services > backing services > building blocks > config,
one subpackage per layer; the stack program and the components free of typer, rich and the
tooling, config free of the Pulumi SDK, and no cycles.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "components"


def contracts() -> dict[str, dict]:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {contract["id"]: contract for contract in document["tool"]["importlinter"]["contracts"]}


def layer_names(contract: dict) -> set[str]:
    return {module.strip() for layer in contract["layers"] for module in layer.replace("|", ":").split(":")}


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{len(contracts())} kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_every_module_and_subpackage_has_a_layer():
    """A new top-level module or subpackage must be placed in a layer, not slip past the contracts."""
    children = {
        f"mlplane.{path.stem if path.is_file() else path.name}"
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").is_file()
    }
    named = layer_names(contracts()["layers"])
    assert children - named == set(), "put these in a layer of pyproject.toml [tool.importlinter]"
    assert named - children == set(), "these layers name modules that do not exist"


def test_the_layered_subpackages_name_every_module():
    """The tooling and config subpackages keep an order of their own; a new module joins it."""
    for contract in contracts().values():
        if contract["type"] != "layers" or "containers" not in contract:
            continue
        [container] = contract["containers"]
        folder = PACKAGE / container.removeprefix("mlplane.").replace(".", "/")
        modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
        modules |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
        assert modules == layer_names(contract), f"{container}: {modules ^ layer_names(contract)}"


def test_the_headless_contract_covers_every_layer_below_the_tooling():
    """Every layer from the stack program down is a source of the headless contract."""
    layers = contracts()["layers"]["layers"]
    below = layers[layers.index("mlplane.program"):]
    modules = {m.strip() for layer in below for m in layer.replace("|", ":").split(":")}
    sources = set(contracts()["program-and-components-stay-headless"]["source_modules"])
    # The scripts shipped into pods import nothing of mlplane; they are not components.
    assert modules - sources == {"mlplane.scripts"}
