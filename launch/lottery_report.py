r"""Combines finished lottery runs (e.g. several seeds) into one plot and table.

  python -m launch.lottery_report --workdir=/tmp/lt_s0 --workdir=/tmp/lt_s1 \
      --out=/tmp/lottery_seeds.png

The plot shows, for tickets and each control, the mean test accuracy over
the runs against weights remaining (log x axis) with a band of its 95 %
Student t interval over the runs (experiments.stats; for controls, over the
runs' means of their own seeds; with one run, over the controls' seeds).
The markdown table (next to --out, `.md`) gives each run's table.
Exit codes: 0 success, 2 bad input (a workdir without summary.json, an
existing --out without --overwrite).
"""
import json
import os
import sys

from absl import app
from absl import flags

_WORKDIRS = flags.DEFINE_multi_string("workdir", None,
                                      "A finished lottery workdir (repeat).")
_OUT = flags.DEFINE_string("out", None, "The PNG to write.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --out.")


def _fail(message: str) -> None:
  print(f"launch.lottery_report: error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _WORKDIRS.value or not _OUT.value:
    _fail("--workdir (one or more) and --out are required")
  summaries = []
  for w in _WORKDIRS.value:
    path = os.path.join(w, "summary.json")
    if not os.path.exists(path):
      _fail(f"--workdir={w}: no summary.json (is the run finished?)")
    with open(path) as f:
      s = json.load(f)
    if "levels" not in s:
      _fail(f"--workdir={w}: not a lottery run (summary has no 'levels')")
    summaries.append(s)
  md = os.path.splitext(_OUT.value)[0] + ".md"
  for p in (_OUT.value, md):
    if os.path.exists(p) and not _OVERWRITE.value:
      _fail(f"{p} exists; pass --overwrite to replace it")
  from experiments import lottery_report  # pylint: disable=g-import-not-at-top
  lottery_report.plot(summaries, _OUT.value)
  text = "\n".join(f"## {w}\n\n" + lottery_report.format_table(s, True)
                   for w, s in zip(_WORKDIRS.value, summaries))
  with open(md + ".tmp", "w") as f:
    f.write(text)
  os.replace(md + ".tmp", md)
  print(f"wrote {_OUT.value} and {md} ({len(summaries)} run(s))")


if __name__ == "__main__":
  app.run(main)
