"""The layer-list spec (experiments/export/_spec.py): one place, used by the
recorder (strict) and the evaluator (lenient about unknown keys)."""

import ast
import os

import flax.linen as nn
import pytest

from experiments import export
from experiments import models
from experiments.export import _ops
from experiments.export import _spec
from experiments.models import layers as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_op_has_attributes_and_arity():
  assert set(export.ATTRIBUTES) == set(export.LAYER_OPS)
  assert set(export.ARITY) == set(export.LAYER_OPS)
  assert set(export.ZERO_PRESERVING) < set(export.ACTIVATION_KINDS)


def test_the_zoo_and_the_evaluator_read_the_one_spec():
  assert L.OPS is export.LAYER_OPS
  assert L.KERNEL_QUANTIZERS is export.KERNEL_QUANTIZERS
  assert L.INPUT_QUANTIZERS is export.INPUT_QUANTIZERS
  assert tuple(L.ACTIVATIONS) == tuple(_ops.ACTIVATIONS) == (
      export.ACTIVATION_KINDS)


def test_the_spec_imports_no_numpy_or_jax():
  with open(os.path.join(ROOT, "experiments", "export", "_spec.py")) as f:
    tree = ast.parse(f.read())
  names = {a.name.split(".")[0] for n in ast.walk(tree)
           if isinstance(n, ast.Import) for a in n.names}
  names |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)}
  assert names <= {"__future__", "math", "typing"}, names


class _Record(nn.Module):
  op: str
  attrs: dict

  @nn.compact
  def __call__(self, x, *, train):
    return L.record(self.op, [x], x.reshape(x.shape[0], -1), **self.attrs)


@pytest.mark.parametrize("op,attrs,match", [
    ("flatten", {"axis": -1}, r"layer 'flatten_0' \(flatten\): unknown "
     r"attribute\(s\) \['axis'\]; flatten takes none"),
    ("softmax", {}, "unknown op 'softmax'"),
    ("activation", {"kind": "gelu"}, "unknown activation 'gelu'"),
    ("concat", {"axs": -1}, r"unknown attribute\(s\) \['axs'\]"),
])
def test_record_refuses_what_the_spec_does_not_allow(op, attrs, match):
  with pytest.raises(models.LayerListError, match=match) as e:
    models.layer_list(_Record(op, attrs), (3,))
  assert len(str(e.value).splitlines()) == 1


def test_the_evaluator_ignores_unknown_keys_the_recorder_refuses():
  e = {"name": "f", "op": "flatten", "inputs": ["input"], "params": {},
       "shape": [3], "note": "x"}
  _spec.check_entry(e, strict=False)
  with pytest.raises(export.SpecError, match="note"):
    _spec.check_entry(e)


def test_arity_is_checked():
  e = {"name": "a", "op": "add", "inputs": ["input"], "params": {},
       "shape": [3]}
  with pytest.raises(export.SpecError, match=r"add takes 2\.\.n inputs"):
    export.check_entry(e)
