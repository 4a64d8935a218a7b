"""JAX-side glue: a run's workdir -> a ``.sbn`` file (the only module of
this package that imports JAX, via ``experiments.train``).

Reads ``RUN/config.json``, restores the newest checkpoint of ``RUN`` (or of
``RUN/level_NN`` for ``level=N`` of a lottery run) with
``experiments.train.load_state``, records the layer list from the model
itself (``experiments.models.layer_list``) and writes the file.  The mask is
only checked (a pruned weight that is not exactly 0 is refused), never
applied.  The summary names the layers whose mask is exactly N:M along the
input axis (``sparsity.summarize``; e.g. 2:4): they are written as any
pruned layer, the file format has no N:M encoding.
"""
from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np

from experiments import models
from experiments import train
import sparsity
from experiments.export import _encode
from experiments.export import write_model


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config from ``workdir/config.json``."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist (not a run workdir)")
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except ValueError as e:
      raise _encode.ExportError(f"{path}: not valid JSON ({e})") from None


def _plain(kwargs) -> dict:
  """A config's ``dataset_kwargs`` as a JSON-ready dict."""
  if kwargs is None:
    return {}
  return json.loads(json.dumps(
      kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)))


def _numpy(tree):
  tree = jax.device_get(tree)
  return jax.tree.map(np.asarray, tree, is_leaf=lambda x: x is None)


def export_run(workdir: str, out: str, *, level: int | None = None,
               overwrite: bool = False, bn_threshold: bool = True,
               bn_fold: bool = True) -> dict:
  """Exports the newest checkpoint of a run; returns a summary dict.

  ``bn_threshold``: BatchNorms read only through a sign are stored as
  per-channel thresholds (format version 2, see ``_encode.py``).
  ``bn_fold``: the other BatchNorms after a binary-weight layer with real
  inputs are folded into it as one scale and shift (format version 3).

  Raises:
    FileNotFoundError: no config.json, or no checkpoint in the (level)
      directory.
    FileExistsError: ``out`` exists and not ``overwrite``.
    ExportError: a pruned weight is not exactly 0, or the layer list cannot
      be encoded.
  """
  if os.path.isdir(out):
    raise IsADirectoryError(f"--out {out} is a directory")
  if os.path.exists(out) and not overwrite:
    raise FileExistsError(f"{out} exists (pass --overwrite to replace it)")
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent):
    raise FileNotFoundError(f"the directory of --out, {parent}, does not "
                            "exist")
  config = load_config(workdir)
  levels = sorted(int(d[6:]) for d in os.listdir(workdir)
                  if d.startswith("level_") and d[6:].isdigit())
  state_dir = workdir
  if level is not None:
    state_dir = os.path.join(workdir, f"level_{level:02d}")
    if not os.path.isdir(state_dir):
      raise FileNotFoundError(f"{state_dir} does not exist (no level {level} "
                              f"in this run; levels: {levels or 'none'})")
  elif levels and not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise FileNotFoundError(f"{workdir} is a lottery run: pass --level=N "
                            f"(levels: {levels})")
  run = train.build(config)
  state = train.load_state(config, state_dir)
  input_shape = tuple(run.dataset.input_shape)
  layers = models.layer_list(run.model, input_shape)
  variables = {"params": _numpy(state.params),
               "batch_stats": _numpy(state.batch_stats)}
  mask = jax.device_get(state.mask)
  meta = {"model": config.model, "dataset": config.dataset,
          "dataset_kwargs": _plain(config.get("dataset_kwargs")),
          "seed": int(config.seed),
          "num_classes": int(run.dataset.num_classes),
          "step": int(state.step), "level": level,
          "workdir": os.path.abspath(workdir), "exporter": "launch.export"}
  size = write_model(out, layers, variables, mask, input_shape=input_shape,
                     meta=meta, overwrite=overwrite,
                     bn_threshold=bn_threshold, bn_fold=bn_fold)
  n_m = {row["name"]: row["n_m"] for row in sparsity.summarize(mask)
         if "n_m" in row}
  return {"out": out, "bytes": size, "layers": len(layers), "n_m": n_m,
          **meta}
