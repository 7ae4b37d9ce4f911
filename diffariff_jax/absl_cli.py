"""The error layer of the absl + config_flags commands (train, eval, aot): one-line errors, exit 1.

`fail` prints `error: MESSAGE` and exits 1; `parse_flags` is absl's parser with an unknown --config.KEY,
a bad flag or a bad value reported in one line; `QuietOrbax` drops orbax's INFO chatter (over a hundred
lines per short run) from the console while its warnings and errors stay.
"""
from __future__ import annotations

import logging as py_logging
import re
import sys
from typing import NoReturn

from absl import flags


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


class QuietOrbax(py_logging.Filter):
    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parser; every parse error is one `error:` line naming the flag or config key."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        fail(" ".join(lines[:1] + lines[-1:]) if len(lines) > 1 else lines[0])
    except (AttributeError, KeyError) as err:  # ml_collections: an override naming a field that does not exist
        text = str(err)
        found = re.search(r"'(\w+)", text)
        key = found.group(1) if found else text.strip().splitlines()[0]
        hint = re.search(r'Did you mean "(\w+)"', text)
        named = [arg.split("=")[0] for arg in argv if arg.startswith("--config.") and f".{key}" in arg]
        fail(f"unknown config key {named[0] if named else key}: the config has no field {key!r}"
             + (f" (did you mean {hint.group(1)!r}?)" if hint else ""))
