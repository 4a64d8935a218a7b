r"""Exports a trained run to one ``.sbn`` file for the CPU evaluator.

  python -m launch.export --workdir=RUN --out=model.sbn [--level=N] \
      [--member=K] [--overwrite] [--allow_unfinished] [--nobn_threshold] \
      [--nobn_fold] [--shrink]

Reads RUN/config.json and exports the result the run's driver declares
(``experiments/drivers.py``): the newest checkpoint of a plain or FBS run,
lottery level N (``--level=N``, required for a lottery run), RePr's final
phase, the hard-pruned FPGM / slimming / gradient-count / main-subsidiary
network, BENN member K (``--member=K``; without it the ensemble: one
``.sbn`` per member next to --out and --out a JSON file with their vote
weights, which ``launch.evaluate`` reads). The run must be finished (its
summary.json; for ``--level=N`` the level's result.json);
``--allow_unfinished`` exports the newest checkpoint of an unfinished
plain or FBS run instead (the file's meta says ``"unfinished": true``).
It records the layer list from the model and writes weights, masks and
bit-packed binary kernels (format: ``experiments/export/_format.py``,
``_encode.py``).  An existing --out is
never replaced without --overwrite; the file appears atomically.  A
BatchNorm read only through a sign (BNN, NIN) is stored as one float32
threshold and one direction bit per channel, exactly equivalent (format
version 2); ``--nobn_threshold`` keeps its four vectors (version 1).  A
BatchNorm after a binary-weight layer with real inputs (BinaryConnect) is
folded into that layer as one scale and shift per channel, the layer's
bias included (version 3; logits equal to float32 rounding);
``--nobn_fold`` keeps its four vectors.  ``--shrink`` writes the
physically smaller network of a filter-pruned result
(``experiments.shrink``: every channel that is exactly 0 removed, with the
kernel columns, biases, BatchNorm entries that make it and the kernel
rows that read it; same logits to float32 rounding).

Exit codes: 0 success, 2 bad input, with a one-line message naming it (no
run / level / member / checkpoint, an unfinished run, a lottery run without
--level, --level or --member for another driver's run, --out exists or
its directory does not, a pruned weight that is not exactly 0, a bad
config, a model without a layer list).
"""

from absl import app
from absl import flags
from absl import logging

from launch import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run.")
_OUT = flags.DEFINE_string("out", None, "The file to write (.sbn).")
_LEVEL = flags.DEFINE_integer("level", None,
                              "Lottery level N: exports RUN/level_NN.")
_MEMBER = flags.DEFINE_integer(
    "member", None, "BENN member K (default: the whole ensemble).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing --out.")
_ALLOW_UNFINISHED = flags.DEFINE_bool(
    "allow_unfinished", False, "Export the newest checkpoint of an "
    "unfinished plain or FBS run (refused by default).")
_BN_THRESHOLD = flags.DEFINE_bool(
    "bn_threshold", True, "Store BatchNorms read only through a sign as "
    "per-channel thresholds (format version 2).")
_BN_FOLD = flags.DEFINE_bool(
    "bn_fold", True, "Fold BatchNorms after a binary-weight layer with real "
    "inputs into that layer as one scale and shift (format version 3).")
_SHRINK = flags.DEFINE_bool(
    "shrink", False, "Write the physically smaller network: every channel "
    "that is exactly 0 removed (experiments.shrink).")


def _fail(message: str, code: int = 2) -> None:
  cli.fail("launch.export", message, code)


def parse_flags(argv):
  """absl flag parsing with a one-line error and exit code 2."""
  return cli.parse_flags("launch.export", argv)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _WORKDIR.value:
    _fail("--workdir is required")
  if not _OUT.value:
    _fail("--out is required")
  if _LEVEL.value is not None and _LEVEL.value < 0:
    _fail("--level must be >= 0")
  if _MEMBER.value is not None and _MEMBER.value < 0:
    _fail("--member must be >= 0")
  logging.set_verbosity(logging.WARNING)
  from experiments import export  # pylint: disable=g-import-not-at-top
  try:
    info = export.export_run(_WORKDIR.value, _OUT.value, level=_LEVEL.value,
                             member=_MEMBER.value, overwrite=_OVERWRITE.value,
                             bn_threshold=_BN_THRESHOLD.value,
                             bn_fold=_BN_FOLD.value,
                             allow_unfinished=_ALLOW_UNFINISHED.value,
                             shrink=_SHRINK.value)
  except (OSError, ValueError, KeyError) as e:
    # Missing run / level / checkpoint, an existing --out, a pruned weight
    # that is not 0 (ExportError), a bad config (ConfigError), a model
    # without a layer list (LayerListError): all ValueError or OSError.
    message = str(e).splitlines()[0] if str(e) else type(e).__name__
    if isinstance(e, KeyError):
      message = f"missing key {message}"
    _fail(message)
  members = (f" ({info['members']} member files and their vote weights)"
             if info.get("members") else "")
  print(f"wrote {info['out']}{members}: {info['bytes']} bytes, "
        f"{info['layers']} layers, {info['model']} on {info['dataset']} at "
        f"step {info['step']}" + (f", level {info['level']}"
                                  if info["level"] is not None else ""))
  if info.get("shrink"):
    print(f"shrunk: {info['shrink']['shrunk_parameters']} of "
          f"{info['shrink']['parameters']} parameters")
  if info.get("result"):
    reported = info.get("reported_test_accuracy")
    print(f"result: {info['result']}" + (
        f" (reported test accuracy {reported:.4f})"
        if isinstance(reported, float) else ""))
  if info.get("n_m"):  # stored as ordinary pruned layers (no N:M encoding)
    print("N:M layers: " + ", ".join(f"{name} {pattern}" for name, pattern
                                     in info["n_m"].items()))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
