"""What every ``launch`` program does with bad input: one line, exit 2.

``fail(program, message)`` prints ``<program>: error: <message>`` to
stderr and exits with `code`; ``parse_flags(program, argv)`` is absl's
flag parsing with that one-line error for a bad or unknown flag (absl's own
message is several lines and a usage dump). The programs wrap both with
their name (``launch.train``'s parser also turns a failing config file
into one line, so it keeps its own).
"""
from __future__ import annotations

import sys
from typing import NoReturn

from absl import flags


def fail(program: str, message: str, code: int = 2) -> NoReturn:
  """Prints ``<program>: error: <message>`` to stderr; exits `code`."""
  print(f"{program}: error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def parse_flags(program: str, argv):
  """``flags.FLAGS(argv)``; a bad flag is :func:`fail` with its first
  line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(program, str(e).splitlines()[0] if str(e) else repr(e), 2)
