"""Write an offline render to a directory without ever losing a file the user owns.

``mlplane render --out DIR`` writes ``DIR/manifests/*.yaml``, ``DIR/resources.json``,
``DIR/outputs.json`` and an index, ``DIR/.mlplane-render.json``, that lists every file it wrote
with its SHA-256. The rules (docs/render-output.md):

- A render owns only the files an earlier render listed in the index. It replaces them, and
  removes those the new render no longer produces.
- A listed file changed since that render is not replaced or removed: the render is refused
  (exit 2, the files named) unless ``force``.
- Anything else in DIR (a file, a link, a directory) was not written by mlplane: a render into
  such a directory is refused unless ``adopt``; even then those files are never replaced or
  removed, and a file sitting where the render must write is always refused. A subdirectory that
  holds its own index is another render's (``--out out/vision`` next to ``--out out``) and is
  left alone.
- Atomic: everything is written and fsynced into a staging directory inside DIR first; then a
  few renames (SIGINT and SIGTERM held back meanwhile, every rename undone on an error) swap the
  new files in, the index last. DIR holds the previous complete render or the new one, never a
  mix; an interrupt before the swap removes the staging directory and leaves DIR as it was.
  ``manifests/`` is swapped as one directory (an atomic exchange where the kernel offers one)
  unless it also holds files mlplane did not write.
- Two renders into the same DIR at once: the second is refused (an advisory lock on DIR).
- If the process is killed (SIGKILL, power loss) during the renames, the staging directory is
  left behind with the new index; the next render accepts the files of both indexes as its own,
  finishes the job and removes the staging directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from mlplane.tooling import interrupts

INDEX = ".mlplane-render.json"
INDEX_FORMAT = "mlplane-render-index/1"
STAGING_PREFIX = ".mlplane-render-staging-"
STAGING_MARKER = ".mlplane-staging"
MANIFESTS = "manifests"
TOP_LEVEL_FILES = ("resources.json", "outputs.json")
#: How many foreign files a refusal names.
NAMED = 5

#: One file directly in manifests/ (Kubernetes names may hold ":", never "/"); no dot file.
_MANIFEST_NAME = re.compile(r"^manifests/[^./\x00][^/\x00]*\.yaml$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class OutputRefused(Exception):
    """The directory holds files the render would lose: one line per problem, nothing written."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Written:
    """What a render wrote."""

    #: Every manifest file of the new render.
    manifests: list[Path]
    #: Files of the earlier render that the new render no longer produces (removed).
    removed: list[str]
    #: Whether DIR also holds files mlplane did not write (left untouched, ``adopt``).
    others_left: bool


# --------------------------------------------------------------------------------------------
# What a render consists of
# --------------------------------------------------------------------------------------------


def render_files(result: Any) -> dict[str, bytes]:
    """The files of a render (path relative to DIR -> content) of a :class:`render.Capture`."""
    import yaml

    from mlplane.tooling import render as render_mod

    files: dict[str, bytes] = {}
    for manifest in result.manifests():
        meta = manifest.get("metadata", {})
        name = f"{meta.get('namespace') or '_cluster'}.{manifest['kind'].lower()}.{meta.get('name')}.yaml"
        relative = f"{MANIFESTS}/{name}"
        if not _MANIFEST_NAME.match(relative):
            raise RuntimeError(f"object {name!r} does not render to a plain file name")
        if relative in files:
            raise RuntimeError(f"two objects render to {name}: names must be unique")
        files[relative] = yaml.safe_dump(manifest, sort_keys=False, width=120).encode()
    files["resources.json"] = render_mod.dumps(render_mod.resources_document(result)).encode()
    files["outputs.json"] = render_mod.dumps(result.outputs).encode()
    return files


def write_render(result: Any, directory: Path, *, adopt: bool = False, force: bool = False) -> Written:
    """Write a render to ``directory`` (see the module docstring for the rules)."""
    return write_files(directory, render_files(result), adopt=adopt, force=force)


def check_directory(directory: Path, *, adopt: bool = False, force: bool = False) -> None:
    """Refuse early (before the slow render) what :func:`write_files` would refuse whatever the
    render holds; write_files checks again, with the render's own file names, under its lock."""
    if os.path.lexists(directory):
        _survey(directory, set(TOP_LEVEL_FILES), adopt=adopt, force=force)


def digest(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def _valid_path(relative: str) -> bool:
    return relative in TOP_LEVEL_FILES or bool(_MANIFEST_NAME.match(relative))


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_files(directory: Path, files: dict[str, bytes], *, adopt: bool = False, force: bool = False) -> Written:
    """Replace the render in ``directory`` by ``files`` atomically; raises :class:`OutputRefused`
    (nothing written) when that would lose a file mlplane did not write or one the user changed."""
    bad = [path for path in files if not _valid_path(path)]
    if bad:
        raise ValueError(f"not a render file: {bad}")
    created = _make_directory(directory)
    try:
        with _locked(directory):
            state = _survey(directory, set(files), adopt=adopt, force=force)
            staging = _stage(directory, files)
            try:
                with interrupts.deferred():
                    removed = _commit(directory, staging, files, state)
                    for leftover in [staging, *state.leftover_staging]:
                        shutil.rmtree(leftover, ignore_errors=True)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except BaseException:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise
    manifests = [directory / path for path in files if path.startswith(f"{MANIFESTS}/")]
    return Written(manifests=manifests, removed=removed, others_left=state.others)


def _make_directory(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return those created (outermost first)."""
    missing = []
    for path in [directory, *directory.parents]:
        if os.path.lexists(path):
            break
        missing.append(path)
    directory.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputRefused(f"--out: another mlplane render is writing to {directory} right now; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _State:
    #: The index in DIR (path -> digest), and those of staging directories a killed render left.
    recorded: dict[str, str]
    pending: list[dict[str, str]]
    leftover_staging: list[Path]
    #: Whether manifests/ holds only files recorded in an index (it is then swapped whole).
    manifests_ours: bool
    others: bool

    def owned(self) -> set[str]:
        return set(self.recorded).union(*self.pending)

    def unchanged(self, path: str, content_digest: str) -> bool:
        return content_digest in {self.recorded.get(path), *(index.get(path) for index in self.pending)}


def _survey(directory: Path, new: set[str], *, adopt: bool, force: bool) -> _State:
    """What DIR holds, and refusal (nothing written) if the render would lose anything."""
    recorded = _read_index(directory / INDEX, directory) or {}
    leftover, pending = _leftover_staging(directory)
    state = _State(recorded, pending, leftover, manifests_ours=True, others=False)
    owned = state.owned()
    problems = []
    changed, not_files = [], []
    for path in sorted(owned):
        target = directory / path
        if not os.path.lexists(target):
            continue
        if target.is_symlink() or not target.is_file():
            not_files.append(path)
        elif not state.unchanged(path, digest(target.read_bytes())):
            changed.append(path)
    if adopt:
        foreign = _foreign(directory, owned, limit=1, within=MANIFESTS)
        others = bool(foreign) or _top_level_others(directory)
    else:
        foreign = _foreign(directory, owned, limit=NAMED)
        others = bool(foreign)
    if foreign and not adopt:
        more = " and more" if len(foreign) >= NAMED else ""
        problems.append(
            f"--out: {directory} holds files mlplane render did not write: {', '.join(foreign)}{more}; "
            "a render never replaces or deletes them: choose a new or empty directory, or pass --adopt-dir "
            "to write the render next to them (they are left untouched)"
        )
    manifests = directory / MANIFESTS
    in_the_way = [path for path in sorted(new) if os.path.lexists(directory / path) and path not in owned]
    if os.path.lexists(manifests) and (manifests.is_symlink() or not manifests.is_dir()):
        in_the_way.insert(0, MANIFESTS)
    in_the_way += not_files
    if in_the_way and (adopt or not foreign):
        problems.append(
            f"--out: {', '.join(str(directory / p) for p in in_the_way[:NAMED])} "
            f"{'is' if len(in_the_way) == 1 else 'are'} in the way of the render and not a file an earlier "
            "render wrote; mlplane never replaces it: move it away or choose another --out"
        )
    if changed and not force:
        problems.append(
            f"--out: {', '.join(str(directory / p) for p in changed[:NAMED])}{' and more' if len(changed) > NAMED else ''} "
            f"changed since the render that wrote {'it' if len(changed) == 1 else 'them'}; copy your changes "
            f"elsewhere, or pass --force to replace {'it' if len(changed) == 1 else 'them'} with the new render (the changes are lost)"
        )
    if problems:
        raise OutputRefused(*problems)
    manifests_ours = not any(path.startswith(f"{MANIFESTS}/") for path in foreign)
    return _State(recorded, pending, leftover, manifests_ours=manifests_ours, others=others)


def _read_index(path: Path, directory: Path) -> dict[str, str] | None:
    """The index of the render in ``directory`` (None when there is none)."""
    if not os.path.lexists(path):
        return None
    problem = f"--out: {path} is not an index written by mlplane render"
    advice = (
        "so mlplane cannot tell which files in the directory it wrote and writes nothing; "
        f"if {directory} holds only a render, delete it and render again"
    )
    if path.is_symlink() or not path.is_file():
        raise OutputRefused(f"{problem} (not a regular file); {advice}")
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as error:
        raise OutputRefused(f"{problem} (not JSON: {error}); {advice}") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(document, dict) or document.get("format") != INDEX_FORMAT or not isinstance(files, dict):
        raise OutputRefused(f"{problem} (expected {{\"format\": \"{INDEX_FORMAT}\", \"files\": {{...}}}}); {advice}")
    for name, value in files.items():
        if not _valid_path(name) or not isinstance(value, str) or not _DIGEST.match(value):
            raise OutputRefused(f"{problem} (entry {name!r}: {value!r} is not a render file with its sha256); {advice}")
    return dict(files)


def _leftover_staging(directory: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """Staging directories a killed render left (recognised by their marker), with their indexes."""
    found, indexes = [], []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if _is_staging(entry):
            found.append(Path(entry.path))
            with contextlib.suppress(OutputRefused):
                index = _read_index(Path(entry.path) / "new" / INDEX, directory)
                if index:
                    indexes.append(index)
    return found, indexes


def _is_staging(entry: os.DirEntry[str]) -> bool:
    if not entry.name.startswith(STAGING_PREFIX) or not entry.is_dir(follow_symlinks=False):
        return False
    return os.path.isfile(os.path.join(entry.path, STAGING_MARKER)) or not os.listdir(entry.path)


def _foreign(directory: Path, owned: set[str], limit: int | None, within: str = "") -> list[str]:
    """Entries of ``directory`` (or of its subdirectory ``within``) no render wrote: files, links
    and empty directories, up to ``limit``."""
    found: list[str] = []

    def visit(path: str, prefix: str) -> None:
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if limit is not None and len(found) >= limit:
                return
            relative = prefix + entry.name
            if not prefix and (entry.name == INDEX or _is_staging(entry)):
                continue
            if entry.is_dir(follow_symlinks=False):
                if relative != MANIFESTS and os.path.isfile(os.path.join(entry.path, INDEX)):
                    continue  # another render's directory
                before = len(found)
                visit(entry.path, relative + "/")
                if len(found) == before and relative != MANIFESTS and not os.listdir(entry.path):
                    found.append(relative + "/")
            elif relative not in owned or entry.is_symlink():
                found.append(relative)

    start = directory / within
    if within and not (start.is_dir() and not start.is_symlink()):
        return []
    visit(str(start), f"{within}/" if within else "")
    return found


def _top_level_others(directory: Path) -> bool:
    """Whether the top level of ``directory`` holds anything besides a render."""
    ours = {INDEX, MANIFESTS, *TOP_LEVEL_FILES}
    return any(entry.name not in ours and not _is_staging(entry) for entry in os.scandir(directory))


def _write_file(path: Path, content: bytes) -> None:
    """Write one new file (the one place a render writes file content); fsynced by _fsync_files."""
    with open(path, "xb") as stream:
        stream.write(content)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_files(paths: list[Path]) -> None:
    """fsync every file, concurrently: the filesystem commits them in a few journal transactions
    (about 0.04 s for a local render on ext4, against 0.5 s one after another)."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(_fsync, paths))


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _stage(directory: Path, files: dict[str, bytes]) -> Path:
    """Write the new render into a staging directory in ``directory``; removed on any failure."""
    staging = directory / f"{STAGING_PREFIX}{secrets.token_hex(6)}"
    staging.mkdir()
    try:
        _write_file(staging / STAGING_MARKER, b"a render in progress: mlplane removes this directory\n")
        new = staging / "new"
        (new / MANIFESTS).mkdir(parents=True)
        (staging / "old" / MANIFESTS).mkdir(parents=True)
        for path, content in files.items():
            _write_file(new / path, content)
        index = {"format": INDEX_FORMAT, "note": "written by `mlplane render`: the files it owns in this directory (docs/render-output.md)"}
        index["files"] = {path: digest(content) for path, content in sorted(files.items())}  # type: ignore[assignment]
        _write_file(new / INDEX, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())
        _fsync_files([new / path for path in [*files, INDEX]])
        for path in (new / MANIFESTS, new, staging):
            _fsync_directory(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _move(source: Path, target: Path) -> None:
    """One rename (the one place a render renames)."""
    os.replace(source, target)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directories in one atomic step (Linux renameat2); False when unavailable."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(error, os.strerror(error), str(first))


class _Swap:
    """The renames that replace the old render by the new one, each undone on failure."""

    def __init__(self) -> None:
        self.undo: list[tuple[str, Path, Path]] = []

    def replace(self, new: Path, target: Path, backup: Path) -> None:
        if os.path.lexists(target):
            try:
                os.link(target, backup)  # a backup, and ``target`` is never missing
            except OSError:
                _move(target, backup)
            self.undo.append(("move", backup, target))
        _move(new, target)
        self.undo.append(("move", target, new))

    def remove(self, target: Path, backup: Path) -> None:
        _move(target, backup)
        self.undo.append(("move", backup, target))

    def swap_directory(self, new: Path, target: Path, backup: Path) -> None:
        if os.path.lexists(target) and _exchange(new, target):
            # ``new`` now holds the old directory; keep it where the clean-up removes it.
            self.undo.append(("exchange", new, target))
            return
        if os.path.lexists(target):
            _move(target, backup)
            self.undo.append(("move", backup, target))
        _move(new, target)
        self.undo.append(("move", target, new))

    def rollback(self) -> None:
        for action, source, target in reversed(self.undo):
            with contextlib.suppress(OSError):
                if action == "exchange":
                    _exchange(source, target)
                else:
                    _move(source, target)


def _commit(directory: Path, staging: Path, files: dict[str, bytes], state: _State) -> list[str]:
    new, old = staging / "new", staging / "old"
    manifests = directory / MANIFESTS
    stale = sorted(
        path
        for path in state.owned() - set(files)
        if path.startswith(f"{MANIFESTS}/") and os.path.lexists(directory / path)
    )
    swap = _Swap()
    try:
        if state.manifests_ours:
            swap.swap_directory(new / MANIFESTS, manifests, old / MANIFESTS)
        else:
            for path in sorted(p for p in files if p.startswith(f"{MANIFESTS}/")):
                swap.replace(new / path, directory / path, old / path)
            for path in stale:
                swap.remove(directory / path, old / path)
        for path in TOP_LEVEL_FILES:
            swap.replace(new / path, directory / path, old / path)
        swap.replace(new / INDEX, directory / INDEX, old / INDEX)
        _fsync_directory(manifests)
        _fsync_directory(directory)
    except BaseException:
        swap.rollback()
        raise
    return stale
