"""${DESCRIPTION}: the platform stack `local` and its team stacks, one program.

A stack whose config holds `mlplane:team` runs the team program, any other the platform program.
"""

from mlplane.program import main

main()
