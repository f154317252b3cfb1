"""The ``mlplane`` console script and ``python -m mlplane``.

Kept free of heavy imports: the Ctrl-C handler (components/tooling/interrupts.py) is installed before the
command line loads the Pulumi SDK and pydantic, so an interrupt during start-up also prints one
line and exits 130 instead of a traceback.
"""

from mlplane.tooling import interrupts


def main() -> None:
    interrupts.install()
    from mlplane.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
