"""One level of iterative magnitude pruning (IMP) and the sparsity ladder.

A level prunes a fraction ``p`` of the SURVIVING weights (per layer or
globally over chosen layers), so after ``L`` levels a fraction
``(1 - p)^L`` remains. The counts are exact (``k = round(p * alive)`` per
group, see :mod:`sparsity`), so a real mask can differ from the closed
forms here by the rounding of each level (at most one weight per group and
level).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import sparsity

PyTree = Any
Mask = Any
Rates = float | Mapping[str, float] | Callable[[str], float]

# LeNet-300-100 on MNIST: kernel sizes and per-round rates (Frankle & Carbin
# 2019, Fig. 2): fc layers 20 %, the output layer at half the rate, 10 %.
_LENET_SIZES = (784 * 300, 300 * 100, 100 * 10)
_LENET_RATES = (0.2, 0.2, 0.1)


def prune_level(params: PyTree, mask: Mask, *,
                rates: Rates | None = None,
                global_rate: float | None = None,
                include: Callable[[str], bool] | None = None) -> Mask:
  """One IMP level: magnitude-prune a fraction of the surviving weights.

  Layer-wise (``rates``): every masked leaf with ``n`` survivors and rate
  ``p`` loses its ``round(p n)`` smallest ``|w|``. Global (``global_rate``):
  one threshold over all included leaves taken together,

  .. math::
     m' = m \\wedge \\neg\\, \\mathrm{smallest}_{k}(|\\theta_T| \\text{ over }
     m), \\qquad k = \\mathrm{round}(p \\cdot \\|m\\|_0).

  Exactly one of ``rates`` and ``global_rate`` is given. Pruned weights are
  never revived. This is a thin, checked front end to
  :func:`sparsity.prune_layerwise` and :func:`sparsity.prune_global`.

  Args:
    params: the trained params ``theta_T`` whose magnitudes are ranked.
    mask: the current mask (``sparsity.create_mask(params)`` at level 0).
    rates: per-layer rates of surviving weights: a float, a mapping
      ``{leaf name or layer prefix: rate}`` with a ``"default"`` key (e.g.
      ``{"default": 0.2, "Dense_2": 0.1}`` for LeNet, whose output layer is
      pruned at half the rate), or a callable ``name -> rate``.
    global_rate: fraction of the surviving included weights to remove with a
      single threshold (ResNet/VGG in the LTH paper: 0.2 over the convs).
    include: only with ``global_rate``: ``include(leaf_name) -> bool``
      choosing the leaves that take part (others keep their mask), e.g.
      ``lambda n: n.startswith("Conv")``; ``None`` means all masked leaves.

  Returns:
    The new mask.

  Raises:
    ValueError: if not exactly one of ``rates`` / ``global_rate`` is given,
      or ``include`` is given with ``rates``.

  Example:
    >>> import jax.numpy as jnp, sparsity, lottery
    >>> p = {"Dense_0": {"kernel": jnp.array([[0.5, -0.1], [0.3, 0.2]])},
    ...      "Dense_1": {"kernel": jnp.array([[0.4, 0.6]])}}
    >>> m = lottery.prune_level(p, sparsity.create_mask(p),
    ...                         rates={"default": 0.5, "Dense_1": 0.0})
    >>> sparsity.count(m)
    (4, 6)

  References:
    Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse,
    Trainable Neural Networks", ICLR 2019 (layer-wise for LeNet/Conv-2/4/6,
    global for VGG-19 and ResNet-18).
  """
  if (rates is None) == (global_rate is None):
    raise ValueError("prune_level takes exactly one of rates= (per layer) "
                     "and global_rate= (one threshold)")
  if rates is not None:
    if include is not None:
      raise ValueError("include= selects leaves for global_rate= only; "
                       "give a rate of 0.0 to spare a layer with rates=")
    return sparsity.prune_layerwise(params, mask, rates)
  return sparsity.prune_global(params, mask, global_rate, include)


def remaining_after(levels: int | np.ndarray, rate: float
                    ) -> float | np.ndarray:
  """Fraction of weights remaining after ``levels`` IMP levels at ``rate``.

  .. math:: P_m(L) = (1 - p)^L

  Args:
    levels: the number of pruning levels ``L`` (an int or an array).
    rate: the per-level rate ``p`` of surviving weights.

  Returns:
    ``(1 - rate) ** levels`` (a float for an int ``levels``).

  Example:
    >>> import lottery
    >>> round(lottery.remaining_after(3, 0.2), 3)
    0.512

  References:
    Frankle & Carbin, ICLR 2019, Sec. 2.
  """
  out = np.power(1.0 - float(rate), levels)
  return float(out) if np.ndim(out) == 0 else out


def oneshot_rate(levels: int | np.ndarray, rate: float
                 ) -> float | np.ndarray:
  """The single pruning rate that reaches the level-``L`` sparsity at once.

  One-shot pruning to the same remaining fraction as ``L`` iterative levels
  at rate ``p``:

  .. math:: p_{\\text{one-shot}} = 1 - (1 - p)^L

  Args:
    levels: the number of iterative levels ``L``.
    rate: the per-level rate ``p``.

  Returns:
    ``1 - (1 - rate) ** levels``.

  Example:
    >>> import lottery
    >>> round(lottery.oneshot_rate(2, 0.2), 2)
    0.36

  References:
    Frankle & Carbin, ICLR 2019 (one-shot vs iterative pruning).
  """
  out = 1.0 - np.power(1.0 - float(rate), levels)
  return float(out) if np.ndim(out) == 0 else out


def layered_remaining(levels: int | np.ndarray, sizes: Sequence[int],
                      rates: Sequence[float]) -> float | np.ndarray:
  """Total remaining fraction when each layer has its own per-level rate.

  .. math::
     P_m(L) = \\frac{\\sum_i n_i (1 - p_i)^L}{\\sum_i n_i}

  Args:
    levels: the number of levels ``L`` (an int or an array).
    sizes: the prunable size ``n_i`` of each layer.
    rates: the per-level rate ``p_i`` of each layer.

  Returns:
    The remaining fraction over all layers.

  Example:
    >>> import lottery
    >>> lottery.layered_remaining(1, [100, 100], [0.2, 0.0])
    0.9
  """
  if len(sizes) != len(rates):
    raise ValueError(f"{len(sizes)} sizes but {len(rates)} rates")
  levels = np.asarray(levels, dtype=np.float64)
  total = sum(int(n) for n in sizes)
  kept = sum(int(n) * np.power(1.0 - float(p), levels)
             for n, p in zip(sizes, rates))
  out = kept / total
  return float(out) if np.ndim(out) == 0 else out


def lenet_ladder(levels: int | np.ndarray) -> float | np.ndarray:
  """LeNet-300-100 remaining fraction after ``levels`` LTH levels.

  Rates (0.2, 0.2, 0.1) on the 784-300-100-10 kernels (266,200 weights,
  biases excluded; output layer at half the rate):

  .. math::
     P_m(k) = \\frac{265200 \\cdot 0.8^k + 1000 \\cdot 0.9^k}{266200}

  giving 51.3 % (k=3), 21.1 % (7), 13.5 % (9), 8.7 % (11), 3.6 % (15),
  1.9 % (18), 1.2 % (20): the labels of the paper's figures.

  Args:
    levels: the number of levels ``k`` (an int or an array).

  Returns:
    The remaining fraction.

  Example:
    >>> import lottery
    >>> round(lottery.lenet_ladder(7), 3)
    0.211

  References:
    Frankle & Carbin, ICLR 2019, Fig. 2 and Fig. 3.
  """
  return layered_remaining(levels, _LENET_SIZES, _LENET_RATES)
