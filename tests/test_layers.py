"""The package's layers (docs/architecture.md), enforced with import-linter.

The contracts live in pyproject.toml ([tool.importlinter]): command line > tooling > stack program
> composition > components > building blocks > stack files > config, the stack program and the
components free of typer, rich and the tooling, config free of the Pulumi SDK, and no cycles.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> dict[str, dict]:
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {contract["id"]: contract for contract in document["tool"]["importlinter"]["contracts"]}


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_every_module_has_a_layer():
    """A new module must be placed in a layer (and so in the contracts), not slip past them."""
    named = {
        module.strip()
        for layer in contracts()["layers"]["layers"]
        for module in layer.replace("|", ":").split(":")
    }
    modules = {f"mlplane.{path.stem}" for path in (ROOT / "components").glob("*.py") if path.stem != "__init__"}
    assert modules - named == set(), "put these modules in a layer of pyproject.toml [tool.importlinter]"
    assert named - modules == set(), "these layers name modules that do not exist"


def test_the_headless_contract_covers_every_module_below_the_tooling():
    """Every module under the stack program (inclusive) is a source of the headless contract."""
    layers = contracts()["layers"]["layers"]
    below = layers[layers.index("mlplane.program"):]
    modules = {m.strip() for layer in below for m in layer.replace("|", ":").split(":")}
    sources = set(contracts()["program-and-components-stay-headless"]["source_modules"])
    # The scripts shipped into pods import nothing of mlplane; they are not components.
    assert modules - sources == {"mlplane.drift_check", "mlplane.inference_logger"}
