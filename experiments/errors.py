"""The errors a run reports to the user as one line (``launch.*``: exit 2).

Kept in a module of its own so that every module can raise them without
importing the validation code (``experiments.config_check`` re-exports
:class:`ConfigError`).
"""


class ConfigError(ValueError):
  """A config field (or the workdir) is bad; the message names the culprit."""


__all__ = ["ConfigError"]
