"""Run a Pulumi program offline and record every resource it would register.

This is the engine behind ``mlplane render``, ``mlplane footprint``, ``mlplane plan`` and the unit
tests: the real program runs against a recording mock monitor (no Pulumi CLI, no cluster, no
credentials). Every registration is captured with its type token, name, parent, options and
inputs; Kubernetes objects are turned back into the manifests the provider would apply.

What an offline render cannot know is said plainly in the output: generated secrets get
deterministic stand-in values (derived from the resource name), command outputs are empty, and
Helm charts appear as one resource with their chart, version and values (their templates need
the chart itself, which is fetched at ``pulumi up``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

# Re-exported: callers and tests read the records from the harness.
from mlplane.tooling.render_records import (  # noqa: F401
    SECRET_MASK,
    Capture,
    Recorded,
    StackOutputs,
    stand_in_secret,
)
from mlplane.core.run_mode import offline, offline_render  # noqa: F401 (offline: callers ask the harness too)


def capture(
    program: Callable[[], Any],
    *,
    project: str = "mlplane",
    stack: str = "render",
    config: dict[str, str] | None = None,
    secret_keys: list[str] | None = None,
    stack_references: Mapping[str, StackOutputs] | None = None,
) -> Capture:
    """Run ``program`` against recording mocks and return what it registered.

    ``stack_references`` gives the outputs of the stacks the program references (by fully
    qualified name). Exceptions raised by the program (for example an invalid config) propagate
    after the runtime has been shut down, and nothing is returned.
    """
    from mlplane.tooling import progress

    # "render" is the stack name of a run without a stack (`--config FILE`, tests).
    with progress.step("rendering the config offline" if stack == "render" else f"rendering stack {stack} offline"):
        from mlplane.tooling import render_engine  # the Pulumi SDK: loaded only when a program runs

        # Components ask mlplane.core.run_mode whether they run offline (they never import this harness).
        with offline_render():
            resources, outputs = render_engine.run(
                program, project=project, stack=stack, config=config, secret_keys=secret_keys, stack_references=stack_references
            )
    return Capture(resources=resources, outputs=outputs)


def resources_document(result: Capture) -> list[dict[str, Any]]:
    return [r.as_json() for r in result.resources]


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
