"""Propose the new model version as an infrastructure change: edit the stack config's
`serving.models[]` entry and open a pull request against the infrastructure repository.

The edit keeps the rest of the stack file as it is (comments, order, quoting: ruamel.yaml's
round trip). For the model entry named `promotion.serving_name`:

- mode fixed: `canary: {version: <new>, weight: <weight>}` (other canary keys are kept);
- mode progressive: the model's own `version` becomes the new one and its canary stays
  `mode: progressive`, so Flagger rolls it out step by step (needs serving.progressive.enabled);
- no entry yet (the first model): a new entry serving the version.

The pull request is reviewed and merged by a person; the infrastructure repository's own
workflow previews it with `mlplane plan`.

    # edit a checked-out stack file in place:
    python pipeline/propose.py --version 7 --stack-file ../infra/stacks/Pulumi.local.yaml
    # or open the pull request through GitHub's REST API (token in GITHUB_TOKEN):
    python pipeline/propose.py --version 7 --github-repo acme/ml-infra [--decision out/decision.json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

import settings as config
from settings import Settings, SettingsError

PLATFORM_KEY = "mlplane:platform"


# --------------------------------------------------------------------------------------------
# The edit
# --------------------------------------------------------------------------------------------


def _yaml(text: str) -> YAML:
    """A round-trip YAML that writes sequences the way the file already does."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    # `key:\n  - item` (dash indented under the key) or `key:\n- item` (dash at the key's column).
    flush = re.search(r"^( *)[^\s#-][^\n]*:[ \t]*\n\1- ", text, re.MULTILINE)
    yaml.indent(mapping=2, sequence=2 if flush else 4, offset=0 if flush else 2)
    return yaml


def edit_platform(platform: dict[str, Any], settings: Settings, version: int) -> str | None:
    """Point the model entry at ``version``; returns what changed, or None when nothing does."""
    serving = platform.setdefault("serving", CommentedMap())
    models = serving.setdefault("models", CommentedSeq())
    if not isinstance(models, list):
        raise SettingsError(f"serving.models: expected a list, got {type(models).__name__}")
    name = settings.serving_name
    entry = next((m for m in models if isinstance(m, dict) and m.get("name") == name), None)
    if entry is None:
        models.append(CommentedMap([("name", name), ("registered_model", settings.registered_model), ("version", version)]))
        return f"adds model '{name}' serving {settings.registered_model} v{version}"
    if entry.get("registered_model") != settings.registered_model:
        raise SettingsError(
            f"promotion.serving_name: serving.models entry '{name}' serves registered model "
            f"{entry.get('registered_model')!r}, not {settings.registered_model!r} (model.registered_model)"
        )
    if entry.get("version") == version:
        return None
    canary = entry.get("canary")
    if settings.mode == "progressive":
        if not (platform.get("serving", {}).get("progressive") or {}).get("enabled"):
            raise SettingsError(
                "promotion.mode: 'progressive' needs serving.progressive.enabled: true in the stack "
                "config (Flagger); enable it there or use mode 'fixed'"
            )
        entry.pop("alias", None)
        entry["version"] = version
        if not isinstance(canary, dict) or canary.get("mode") != "progressive":
            entry["canary"] = CommentedMap([("mode", "progressive")])
        return f"rolls model '{name}' out to v{version} progressively (Flagger)"
    if isinstance(canary, dict) and canary.get("mode") == "progressive":
        raise SettingsError(
            f"promotion.mode: model '{name}' has canary mode 'progressive' in the stack config; "
            "set promotion.mode: progressive in retrain.yaml"
        )
    if isinstance(canary, dict) and canary.get("version") == version:
        return None
    if not isinstance(canary, dict):
        canary = entry["canary"] = CommentedMap()
    canary.pop("alias", None)
    canary.pop("mode", None)
    canary["version"] = version
    canary["weight"] = settings.weight
    return f"canaries model '{name}' v{version} at {settings.weight}%"


def edit_stack(text: str, settings: Settings, version: int) -> tuple[str, str | None]:
    """The stack file with the model entry edited, and what changed (None: nothing to do)."""
    yaml = _yaml(text)
    document = yaml.load(text)
    stack_config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(stack_config, dict) or PLATFORM_KEY not in stack_config:
        raise SettingsError(f"promotion.stack: the stack file has no config.{PLATFORM_KEY} (is it an mlplane platform stack?)")
    platform = stack_config[PLATFORM_KEY]
    if isinstance(platform, str):  # `pulumi new` and `pulumi config set` store the object as JSON
        parsed = json.loads(platform)
        change = edit_platform(parsed, settings, version)
        if change:
            stack_config[PLATFORM_KEY] = json.dumps(parsed)
    elif isinstance(platform, dict):
        change = edit_platform(platform, settings, version)
    else:
        raise SettingsError(f"config.{PLATFORM_KEY}: expected a mapping, got {type(platform).__name__}")
    if change is None:
        return text, None
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue(), change


# --------------------------------------------------------------------------------------------
# The pull request (GitHub REST API: repos/contents, git/refs, pulls)
# --------------------------------------------------------------------------------------------


class GitHub:
    def __init__(self, repository: str, token: str, api: str):
        self.repository, self.token, self.api = repository, token, api.rstrip("/")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.api}/repos/{self.repository}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                     "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise SettingsError(f"GitHub {method} {path}: HTTP {error.code}: {detail}") from None


def open_pull_request(github: GitHub, path: str, settings: Settings, version: int, body: str, base: str | None) -> str | None:
    base = base or github.call("GET", "")["default_branch"]
    current = github.call("GET", f"/contents/{path}?ref={base}")
    text = base64.b64decode(current["content"]).decode()
    edited, change = edit_stack(text, settings, version)
    if change is None:
        print(f"{path} on {base} already serves v{version}: no pull request")
        return None
    branch = f"retrain/{settings.serving_name}-v{version}"
    head = github.call("GET", f"/git/ref/heads/{base}")["object"]["sha"]
    github.call("POST", "/git/refs", {"ref": f"refs/heads/{branch}", "sha": head})
    title = f"{settings.serving_name}: {change}"
    github.call("PUT", f"/contents/{path}", {"message": title, "branch": branch, "sha": current["sha"],
                                              "content": base64.b64encode(edited.encode()).decode()})
    pull = github.call("POST", "/pulls", {"title": title, "head": branch, "base": base, "body": body})
    return pull["html_url"]


def describe(settings: Settings, version: int, decision: dict[str, Any] | None, reason: str) -> str:
    lines = [f"Retraining proposes **{settings.registered_model} v{version}** (MLflow alias `challenger`) "
             f"for the served model `{settings.serving_name}` (mode `{settings.mode}`).", ""]
    if decision:
        champion = decision["champion"]
        versus = "no champion yet" if champion is None else f"champion v{decision['champion_version']}: {champion:.4f}"
        lines.append(f"- {decision['metric']} on the holdout rows: challenger {decision['challenger']:.4f}, {versus}")
    lines += [f"- triggered by: {reason}", "",
              "Review the `mlplane plan` of this pull request before merging. After the canary has proven "
              "the version, move the MLflow alias `champion` to it."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", type=int, required=True, help="the registered model version to propose")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack-file", type=Path, help="edit this stack file in place")
    where.add_argument("--github-repo", help="owner/name of the infrastructure repository (token in GITHUB_TOKEN)")
    parser.add_argument("--stacks-dir", default="stacks", help="directory of the stack files in that repository")
    parser.add_argument("--base", help="branch to propose against (default: the repository's default branch)")
    parser.add_argument("--decision", type=Path, help="evaluate.py's output, quoted in the pull request")
    parser.add_argument("--reason", default="a manual run", help="why retraining ran, quoted in the pull request")
    args = parser.parse_args()
    settings = config.load()
    if args.version < 1:
        raise SettingsError(f"--version: {args.version} is not a registered model version (1 or more)")
    if args.stack_file is not None:
        try:
            text = args.stack_file.read_text()
        except OSError as error:
            raise SettingsError(f"--stack-file: cannot read {args.stack_file}: {error.strerror}") from None
        edited, change = edit_stack(text, settings, args.version)
        if change is None:
            print(f"{args.stack_file} already serves v{args.version}: nothing to change")
            return
        args.stack_file.write_text(edited)
        print(f"{args.stack_file}: {change}")
        return
    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        raise SettingsError("GITHUB_TOKEN: not set; it must be a token that may push branches to and open pull requests on " + args.github_repo)
    decision = config.read_json(args.decision, "--decision") if args.decision else None
    github = GitHub(args.github_repo, token, os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    path = f"{args.stacks_dir.strip('/')}/Pulumi.{settings.stack}.yaml"
    url = open_pull_request(github, path, settings, args.version, describe(settings, args.version, decision, args.reason), args.base)
    if url:
        config.github_output(pull_request=url)
        print(f"opened {url}")


if __name__ == "__main__":
    config.run(main)
