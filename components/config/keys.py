"""Every key mlplane reads from a stack's config, defined once.

A stack config holds one object: ``mlplane:platform`` (a platform stack) or ``mlplane:team`` (a
team stack), plus the secret keys its ``*_key`` fields name. Two spellings of each key are
needed: the full key, as it appears in ``stacks/Pulumi.<stack>.yaml`` and in messages, and the
short key inside the namespace, as ``pulumi.Config(NAMESPACE).get_object(...)`` reads it.
"""

from __future__ import annotations

from mlplane.config import NAMESPACE

#: The key inside the ``mlplane`` namespace: ``pulumi.Config(NAMESPACE).get_object(PLATFORM_SHORT_KEY)``.
PLATFORM_SHORT_KEY = "platform"
#: The key inside the ``mlplane`` namespace of a team stack's object.
TEAM_SHORT_KEY = "team"
#: Set ('delete-data' or 'keep-data') only in the config of a team's offboarding run.
OFFBOARDING_SHORT_KEY = "offboarding"

#: The full keys, as written in a stack config file and named in messages.
PLATFORM_CONFIG_KEY = f"{NAMESPACE}:{PLATFORM_SHORT_KEY}"
TEAM_CONFIG_KEY = f"{NAMESPACE}:{TEAM_SHORT_KEY}"
OFFBOARDING_KEY = f"{NAMESPACE}:{OFFBOARDING_SHORT_KEY}"
#: Object-valued config keys (a platform and a team); a stack holds exactly one of them.
OBJECT_KEYS = (PLATFORM_CONFIG_KEY, TEAM_CONFIG_KEY)
