"""STE-binarized train step vs its float twin (target: ratio <= 1.15).

  python -m bench.ste_step [--quick]

Both steps are the trainer's own (`train.make_train_step`: squared hinge
loss, Adam, BatchNorm, the masked-optimizer wrapper off), jitted with
donated state on identical batches; the binary model is the float model
with `binarize=True` (sign forward + clipped STE backward on every
kernel, latent weights clipped to [-1, 1] and Glorot-scaled updates), the
twin has `binarize=False`. Printed twice: the STE alone (both steps with
the same optimizer chain) and the full BinaryConnect recipe. Ratio of medians of interleaved timings, for the
BinaryConnect MLP (3 x 1024 on MNIST shapes, batch 100) and the BNN CNN
(VGG-like, width 0.25, CIFAR-10 shapes, batch 50, binary activations).
"""
import sys

import jax
import jax.numpy as jnp
import optax

from bench._timing import interleaved_medians
from experiments import models
from experiments import optimizers
from experiments import train
from experiments.configs import binaryconnect_digits
import sparsity


def _step(model_name, kwargs, input_shape, batch, binarize, recipe=True):
  config = binaryconnect_digits.get_config()
  config.binarize = binarize
  if not recipe:  # the STE alone: no weight clipping, no Glorot LR scale
    config.clip_weights = 0.0
    config.glorot_lr_scale = False
  model = models.get_model(model_name, 10, binarize=binarize, **kwargs)
  tx = optax.with_extra_args_support(optimizers.make_optimizer(
      config, binary_include=models.is_binary_kernel))
  rng = jax.random.PRNGKey(0)
  variables = model.init(rng, jnp.zeros((1, *input_shape)), train=False)
  params = variables["params"]
  state = train.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
      mask=sparsity.create_mask(params), rng=rng)
  data = {"image": jax.random.normal(rng, (batch, *input_shape)),
          "label": jax.random.randint(rng, (batch,), 0, 10)}
  step = jax.jit(train.make_train_step(model, tx, "squared_hinge"),
                 donate_argnums=0)
  box = [state]

  def run(n):
    for _ in range(n):
      box[0], m = step(box[0], data)
    m["loss"].block_until_ready()
  run(2)  # compile
  return run


def _bench(name, model_name, kwargs, input_shape, batch, number, repeats):
  t = interleaved_medians(
      {"float": _step(model_name, kwargs, input_shape, batch, False),
       "ste": _step(model_name, kwargs, input_shape, batch, True, False),
       "binaryconnect": _step(model_name, kwargs, input_shape, batch, True)},
      number=number, repeats=repeats)
  for key, what in (("ste", "STE only"),
                    ("binaryconnect", "STE + clip + Glorot LR")):
    print(f"{name}: float {t['float'] * 1e3:.3f} ms/step, {what} "
          f"{t[key] * 1e3:.3f} ms/step, ratio {t[key] / t['float']:.3f} "
          f"(target <= 1.15) on {jax.devices()[0].platform}", flush=True)


def main(argv):
  quick = "--quick" in argv
  _bench("binaryconnect_mlp 3x1024", "binary_mlp",
         {"hidden": (1024, 1024, 1024), "binary_first": True,
          "binary_last": True}, (28, 28, 1), 100,
         number=10 if quick else 50, repeats=5 if quick else 11)
  _bench("bnn_cnn width 0.25", "bnn_cnn",
         {"width": 0.25, "input_quantizer": "ste_sign",
          "activation": "hard_tanh", "binary_first": True,
          "binary_last": True}, (32, 32, 3), 50,
         number=2 if quick else 5, repeats=3 if quick else 9)


if __name__ == "__main__":
  main(sys.argv)
