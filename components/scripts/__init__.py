"""Scripts shipped into pods as files (read with importlib.resources, never imported by mlplane):
linters and tests read them as Python; a package only so tests can import their pure functions."""
