"""Every key mlplane reads from a stack's config, defined once.

A stack config holds one object: ``mlplane:platform`` (a platform stack) or ``mlplane:team`` (a
team stack), plus the secret keys its ``*_key`` fields name. Two spellings of each key are
needed: the full key, as it appears in ``stacks/Pulumi.<stack>.yaml`` and in messages, and the
short key inside the namespace, as ``pulumi.Config(NAMESPACE).get_object(...)`` reads it.
"""

from __future__ import annotations

from typing import Any

#: The Pulumi config namespace mlplane reads; every key in it must be one mlplane knows.
NAMESPACE = "mlplane"

#: The key inside the ``mlplane`` namespace: ``pulumi.Config(NAMESPACE).get_object(PLATFORM_SHORT_KEY)``.
PLATFORM_SHORT_KEY = "platform"
#: The key inside the ``mlplane`` namespace of a team stack's object.
TEAM_SHORT_KEY = "team"
#: On a platform stack, set only in the copy of its config `mlplane team destroy` deploys: team
#: name -> 'delete-data' or 'keep-data'; those teams' grants become revoke Jobs.
OFFBOARDING_SHORT_KEY = "offboardTeams"

#: The full keys, as written in a stack config file and named in messages.
PLATFORM_CONFIG_KEY = f"{NAMESPACE}:{PLATFORM_SHORT_KEY}"
TEAM_CONFIG_KEY = f"{NAMESPACE}:{TEAM_SHORT_KEY}"
OFFBOARDING_KEY = f"{NAMESPACE}:{OFFBOARDING_SHORT_KEY}"
#: Object-valued config keys (a platform and a team); a stack holds exactly one of them.
OBJECT_KEYS = (PLATFORM_CONFIG_KEY, TEAM_CONFIG_KEY)

#: What to write when a stack has no platform object.
NO_PLATFORM_HOW = (
    "add `mlplane:platform: {}` under `config:` to ask for every default explicitly, or start "
    "from the repository's stacks/Pulumi.local.yaml (every key: docs/config-reference.md)"
)
NO_PLATFORM_HINT = f"the stack has no platform object: {NO_PLATFORM_HOW}"


def unknown_stack_keys(
    keys: Any, known: Any, owner: str, suggest_from: Any = (), stack: str | None = None
) -> list[str]:
    """One problem per key of the ``mlplane`` namespace that is not in ``known``.

    ``keys`` are the stack's config keys (``namespace:key``), ``known`` the full keys the stack
    may hold, ``owner`` the object whose ``*_key`` fields name secret keys (for the message);
    the closest key of ``known`` and ``suggest_from`` is suggested. Other namespaces (``aws:``,
    ``kubernetes:``, ``pulumi:``) are not mlplane's.
    """
    import difflib

    known = set(known)
    prefix = f"{NAMESPACE}:"
    # Compared without the namespace, which every candidate shares.
    candidates = sorted(k.removeprefix(prefix) for k in known | set(suggest_from))
    where = f" --stack {stack}" if stack else ""
    problems = []
    for key in sorted(k for k in keys if isinstance(k, str) and k.startswith(prefix)):
        if key in known:
            continue
        close = difflib.get_close_matches(key.removeprefix(prefix), candidates, n=1, cutoff=0.6)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        problems.append(
            f"{key}: unknown config key in the '{NAMESPACE}' namespace{hint}; this stack may hold "
            f"{', '.join(sorted(known))} (a secret key only when a `*_key` field of {owner} names it); "
            f"rename it, or remove it with `pulumi config rm {key}{where}`"
        )
    return problems
