"""An exported ensemble (BENN): member ``.sbn`` files and their vote.

``launch.export --workdir=BENN_RUN --out=ensemble.json`` writes one
``.sbn`` per member next to ``out`` (``ensemble.member_NN.sbn``) and
``out`` itself, a small JSON file::

    {"format": "sbn-ensemble/1", "members": ["ensemble.member_00.sbn", ...],
     "alphas": [1.0, ...], "vote": "soft", "scores": "scores",
     "meta": {"model": ..., "dataset": ..., ...}}

:class:`Ensemble` loads it (member paths relative to the JSON file) and
computes the BENN driver's soft vote: ``argmax_c sum_k alpha_k f_k(x)_c``
over the members' outputs (``"scores": "probabilities"``: over their
softmax), summed in float64 in member order as ``binary.soft_vote`` does.
NumPy only, like the rest of the evaluator.
"""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from experiments.export._evaluator import Model
from experiments.export._format import FormatError
from experiments.export._format import check_meta

ENSEMBLE_FORMAT = "sbn-ensemble/1"


def is_ensemble_file(path: str) -> bool:
  """True when `path` is an ensemble's JSON file (not an ``.sbn``)."""
  try:
    with open(path, "rb") as f:
      return f.read(1) == b"{"
  except OSError:
    return False


class Ensemble:
  """Members (:class:`Model`) and their soft vote; ``run(x)`` returns the
  vote's scores (N, C) (their argmax is the ensemble's prediction)."""

  def __init__(self, manifest: dict, members: list[Model]):
    self.manifest, self.members = manifest, members
    meta = manifest.get("meta") or {}
    check_meta(meta)
    self.meta = dict(meta)
    self.alphas = np.asarray(manifest["alphas"], np.float64)
    self.scores = manifest.get("scores", "scores")
    self.input_shape = members[0].input_shape
    self.use_numba = members[0].use_numba

  @classmethod
  def load(cls, path: str, **kwargs) -> "Ensemble":
    """Reads the JSON file and every member; raises :class:`FormatError`."""
    try:
      with open(path) as f:
        manifest = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
      message = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise FormatError(f"not an ensemble file ({message})") from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != ENSEMBLE_FORMAT:
      raise FormatError(f"not an ensemble file (format {fmt!r}, expected "
                        f"{ENSEMBLE_FORMAT!r})")
    names, alphas = manifest.get("members"), manifest.get("alphas")
    if (not isinstance(names, list) or not names or not isinstance(
        alphas, list) or len(alphas) != len(names)
        or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                   and np.isfinite(a) for a in alphas)):
      raise FormatError("ensemble file: 'members' and 'alphas' (finite "
                        "numbers) must be lists of the same nonzero length")
    if manifest.get("vote", "soft") != "soft" or manifest.get(
        "scores", "scores") not in ("scores", "probabilities"):
      raise FormatError(f"ensemble file: unknown vote "
                        f"{manifest.get('vote')!r} / scores "
                        f"{manifest.get('scores')!r}")
    base = os.path.dirname(os.path.abspath(path))
    members = []
    for name in names:
      member = os.path.join(base, str(name))
      if not os.path.exists(member):
        raise FormatError(f"ensemble member {name} does not exist (next to "
                          f"{os.path.basename(path)})")
      try:
        members.append(Model.load(member, **kwargs))
      except FormatError as e:
        raise FormatError(f"ensemble member {name}: {e}") from None
    if len({m.input_shape for m in members}) != 1:
      raise FormatError("ensemble members take different input shapes")
    return cls(manifest, members)

  def member_scores(self, x: np.ndarray, *,
                    timings: dict[str, float] | None = None) -> np.ndarray:
    """(K, N, C): each member's outputs (softmax for "probabilities")."""
    out = []
    for k, m in enumerate(self.members):
      t = {} if timings is not None else None
      s = np.asarray(m.run(x, timings=t), np.float32)
      if timings is not None:
        for name, sec in t.items():
          key = f"member_{k:02d}/{name}"
          timings[key] = timings.get(key, 0.0) + sec
      if self.scores == "probabilities":
        e = np.exp(s - s.max(-1, keepdims=True))
        s = e / e.sum(-1, keepdims=True)
      out.append(s)
    return np.stack(out)

  def run(self, x: np.ndarray, *,
          timings: dict[str, float] | None = None) -> np.ndarray:
    """The soft vote's scores (N, C), float64."""
    scores = self.member_scores(x, timings=timings).astype(np.float64)
    return np.tensordot(self.alphas, scores, axes=1)

  __call__ = run

  def plan(self) -> list[dict[str, Any]]:
    """Every member's plan, names prefixed ``member_NN/``."""
    return [{**row, "name": f"member_{k:02d}/{row['name']}"}
            for k, m in enumerate(self.members) for row in m.plan()]

  def macs(self) -> dict:
    return {f"member_{k:02d}/{name}": v for k, m in enumerate(self.members)
            for name, v in m.macs().items()}
