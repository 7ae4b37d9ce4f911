"""User-given paths: the one place a command-line path becomes the path every layer below uses.

Every CLI passes each path flag (workdirs, --checkpoint, --cae, --clap, --data, --out, records dirs)
through `resolve` at its boundary, so nothing below ever sees a relative path or a mangled URI:
  - a local path becomes absolute (orbax refuses relative checkpoint paths, and a relative path means
    something else after a chdir or in a subprocess), with `~` expanded;
  - a bucket URI (gs://, s3://) stays a URI and comes back as an `etils.epath.Path`, which reads and
    writes it; `pathlib.Path("gs://b/x")` would silently become the relative local path "gs:/b/x".
Code that can only work on a local filesystem (ArrayRecord readers, soundfile, fluidsynth) asks for
`local(path, what)`, which fails in one line naming the input instead of writing a folder named "gs:".
"""
from __future__ import annotations

import os
import pathlib
import re

from etils import epath

URI = re.compile(r"^[a-z][a-z0-9+.-]*://")
# What pathlib leaves of a URI ("gs:/bucket/x"): never a real local path, so refuse it early.
MANGLED_URI = re.compile(r"^[a-z][a-z0-9+.-]*:/[^/]")


class PathError(ValueError):
    """A one-line, user-facing path problem (empty, mangled URI, a URI where only local paths work)."""


def is_uri(path: str | os.PathLike) -> bool:
    return bool(URI.match(os.fspath(path)))


def resolve(path: str | os.PathLike, what: str = "path") -> epath.Path:
    """An absolute local path or an untouched URI, as an epath.Path. `what` names the flag in errors."""
    text = os.fspath(path).strip() if path is not None else ""
    if not text:
        raise PathError(f"{what}: an empty path was given")
    if is_uri(text):
        return epath.Path(text)
    if MANGLED_URI.match(text):
        raise PathError(f"{what} {text!r} looks like a URI that lost a slash (write gs://BUCKET/...)")
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def resolve_optional(path: str | os.PathLike | None, what: str = "path") -> epath.Path | None:
    return None if path is None or os.fspath(path) == "" else resolve(path, what)


def local(path: str | os.PathLike, what: str = "path") -> pathlib.Path:
    """An absolute local pathlib.Path; a URI is a one-line error (for readers that only take local files)."""
    if is_uri(path):
        raise PathError(f"{what} {os.fspath(path)}: only a local path works here (mount the bucket with "
                        "gcsfuse or copy it to local disk; see docs/training.md)")
    return pathlib.Path(os.fspath(resolve(path, what)))
