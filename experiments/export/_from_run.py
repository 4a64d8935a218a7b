"""JAX-side glue: a run's workdir -> a ``.sbn`` file (the only module of
this package that imports JAX, via ``experiments.train``).

Reads ``RUN/config.json``, asks the run's driver for its result
(``experiments.drivers.deployable``: the newest checkpoint of a plain run,
lottery level N, RePr's final phase, the hard-pruned FPGM / slimming /
gradient-count / main-subsidiary network, a BENN member or the ensemble),
records the layer list from the model itself
(``experiments.models.layer_list``) and writes the file.  The mask is
only checked (a pruned weight that is not exactly 0 is refused), never
applied.  The summary names the layers whose mask is exactly N:M along the
input axis (``sparsity.summarize``; e.g. 2:4): they are written as any
pruned layer, the file format has no N:M encoding.  ``shrink=True``
writes the physically smaller network instead (``experiments.shrink``:
every channel that is exactly 0 removed with the weights that make and
read it; the mask is checked first, then cut like the params; the meta's
``"shrink"`` gives both parameter counts).
"""
from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np

from experiments import drivers
from experiments import locks
from experiments import models
from experiments import shrink as shrink_lib
from experiments import train
import sparsity
from experiments.export import _encode
from experiments.export import write_model
from experiments.export._ensemble import ENSEMBLE_FORMAT

# A user's own model, for experiments.export.export_model (JAX side).
export_model = models.export_model


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


def _check_out(out: str, overwrite: bool) -> None:
  if os.path.isdir(out):
    raise IsADirectoryError(f"--out {out} is a directory")
  if os.path.exists(out) and not overwrite:
    raise FileExistsError(f"{out} exists (pass --overwrite to replace it)")
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent):
    raise FileNotFoundError(f"the directory of --out, {parent}, does not "
                            "exist")


def _write(dep, workdir: str, out: str, *, overwrite: bool,
           bn_threshold: bool, bn_fold: bool, extra: dict | None = None,
           run=None, shrink: bool = False) -> dict:
  """Writes one ``drivers.Deployable`` (`run`: ``train.build`` of its
  config, when the caller has it); returns the summary dict."""
  config, state = dep.config, dep.state
  run = run or train.build(config)
  input_shape = tuple(run.dataset.input_shape)
  layers = models.layer_list(run.model, input_shape)
  variables = {"params": _numpy(state.params),
               "batch_stats": _numpy(state.batch_stats)}
  mask = jax.device_get(state.mask)
  info = dict(dep.info)
  shrunk = {}
  if shrink:
    _encode.check_pruned_zero(variables["params"], mask)
    keep = shrink_lib.kept_channels(layers, variables,
                                    input_shape=input_shape)
    before = shrink_lib.parameter_count(layers, variables)
    mask = shrink_lib.remove_channels(layers, {"params": mask},
                                      keep)[1]["params"]
    layers, variables = shrink_lib.remove_channels(*shrink_lib.fold_constants(
        layers, variables, keep, input_shape=input_shape), keep)
    shrunk = {"shrink": {
        "parameters": before,
        "shrunk_parameters": shrink_lib.parameter_count(layers, variables)}}
  meta = {"model": config.model, "dataset": config.dataset,
          "dataset_kwargs": _plain(config.get("dataset_kwargs")),
          "seed": int(config.seed),
          "num_classes": int(run.dataset.num_classes),
          "step": int(state.step), "level": info.get("level"),
          "member": info.get("member"), "result": info.get("result"),
          "reported_test_accuracy": info.get("test_accuracy"),
          "method": drivers.section_of(config) or "plain",
          "workdir": os.path.abspath(workdir), "exporter": "launch.export",
          **({"unfinished": True} if info.get("unfinished") else {}),
          **shrunk, **(extra or {})}
  size = write_model(out, layers, variables, mask, input_shape=input_shape,
                     meta=meta, overwrite=overwrite,
                     bn_threshold=bn_threshold, bn_fold=bn_fold)
  n_m = {row["name"]: row["n_m"] for row in sparsity.summarize(mask)
         if "n_m" in row}
  return {"out": out, "bytes": size, "layers": len(layers), "n_m": n_m,
          **meta}


def _unfinished(config, workdir: str, **options) -> drivers.Deployable:
  """The newest checkpoint of an unfinished plain or FBS run."""
  module = drivers.driver_of(config).__name__
  if module not in (drivers.PLAIN, drivers.DRIVERS["fbs"]):
    raise ValueError(
        f"--allow_unfinished exports the newest checkpoint of an unfinished "
        f"plain or FBS run; {workdir} is a {drivers.section_of(config)} run, "
        "whose result exists only once it finishes")
  given = sorted(k for k, v in options.items() if v is not None)
  if given:
    raise ValueError(f"{workdir}: option {given[0]!r} is not taken by a "
                     "plain or FBS run")
  state = train.load_state(config, workdir)
  return drivers.Deployable(config, state, {
      "result": f"the newest checkpoint (step {int(state.step)}) of an "
                "UNFINISHED run", "test_accuracy": None,
      "unfinished": True})


def member_path(out: str, k: int) -> str:
  """The file of ensemble member `k` next to the ensemble file `out`."""
  stem = out[:-len(".json")] if out.endswith(".json") else out
  return f"{stem}.member_{k:02d}.sbn"


def export_run(workdir: str, out: str, *, level: int | None = None,
               member: int | None = None, overwrite: bool = False,
               bn_threshold: bool = True, bn_fold: bool = True,
               allow_unfinished: bool = False, shrink: bool = False) -> dict:
  """Exports the result a run's driver declares; returns a summary dict.

  The driver of the run's config (``experiments.drivers.deployable``)
  names the network: the newest checkpoint of a plain run, lottery level
  ``level``, BENN member ``member`` (without it the whole ensemble: one
  ``.sbn`` per member, ``member_path``, and ``out`` a JSON file with their
  names and vote weights that ``launch.evaluate`` reads), the final network
  of every other driver (see ``experiments/drivers.py``).

  ``bn_threshold``: BatchNorms read only through a sign are stored as
  per-channel thresholds (format version 2, see ``_encode.py``).
  ``bn_fold``: the other BatchNorms after a binary-weight layer with real
  inputs are folded into it as one scale and shift (format version 3).
  ``allow_unfinished``: an unfinished plain or FBS run (no
  ``summary.json``) exports its newest checkpoint instead of being refused;
  the file's meta says so and carries no reported accuracy. Other drivers'
  results exist only once they finish (a finished lottery level always
  exports).
  ``shrink``: write the physically smaller network (module docstring).

  Raises:
    FileNotFoundError: no config.json, an unfinished run (or level), no
      such level, or no checkpoint.
    FileExistsError: ``out`` exists and not ``overwrite``.
    ValueError: an option the run's driver does not take, or no such
      member.
    ExportError: a pruned weight is not exactly 0, or the layer list cannot
      be encoded.
  """
  workdir = locks.absolute(workdir)  # orbax needs an absolute path
  _check_out(out, overwrite)
  config = load_config(workdir)
  if allow_unfinished and not os.path.exists(
      os.path.join(workdir, "summary.json")):
    dep = _unfinished(config, workdir, level=level, member=member)
  else:
    dep = drivers.deployable(config, workdir, level=level, member=member)
  kw = {"overwrite": overwrite, "bn_threshold": bn_threshold,
        "bn_fold": bn_fold, "shrink": shrink}
  if isinstance(dep, drivers.Deployable):
    return _write(dep, workdir, out, **kw)
  files = [member_path(out, k) for k in range(len(dep.members))]
  for path in files:
    _check_out(path, overwrite)
  built = train.build(dep.members[0].config)  # one model for every member
  infos = [_write(m, workdir, path, extra={"ensemble": os.path.basename(out)},
                  run=built, **kw) for m, path in zip(dep.members, files)]
  manifest = {"format": ENSEMBLE_FORMAT,
              "members": [os.path.basename(p) for p in files],
              "alphas": [float(a) for a in dep.alphas], "vote": dep.vote,
              "scores": dep.scores,
              "meta": {k: v for k, v in infos[0].items()
                       if k not in ("out", "bytes", "layers", "n_m",
                                    "member", "ensemble")}}
  manifest["meta"].update(result=dep.info.get("result"),
                          reported_test_accuracy=dep.info.get(
                              "test_accuracy"))
  tmp = out + ".tmp"
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=2)
  os.replace(tmp, out)
  return {**manifest["meta"], "out": out,
          "bytes": sum(i["bytes"] for i in infos) + os.path.getsize(out),
          "layers": infos[0]["layers"], "n_m": infos[0]["n_m"],
          "members": len(files), "member": None}
