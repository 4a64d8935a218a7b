r"""Binary Ensemble Neural Networks (BENN): bagging, boosting, voting.

Event functions between trained members (NumPy, pure, seeded).

Bagging: member i trains on a bootstrap sample, ``N`` indices drawn with
replacement (:func:`bootstrap_indices`).

Boosting (AdaBoost-style, by resampling, as the official code): example
weights ``w`` start at ``1/N``; member i trains on ``N`` indices drawn with
probabilities ``w / sum(w)`` (:func:`resample_indices`); then with
``miss_j = 1[pred_i(x_j) != y_j]``, ``s_j = +1`` if missed else ``-1`` and

.. math:: \epsilon = \frac{\sum_j w_j\,\mathrm{miss}_j}{\sum_j w_j}

:func:`boost_weights` gives the member weight and the new example weights:

* A: :math:`\alpha = \tfrac12\ln\frac{1-\epsilon}{\epsilon}`,
  :math:`w_j \leftarrow w_j e^{\alpha s_j}` (then divided by the sum);
* B: same alpha, :math:`w_j \leftarrow 1 / ((1/w_j - 1) e^{-\alpha s_j} +
  1)`;
* C: same alpha, :math:`w_j \leftarrow 1 - c\,v_j / \sum|v|` with
  :math:`v_j = (1 - w_j) e^{-\alpha s_j}`;
* D (the BENN code's ``boostD``): :math:`\alpha = \nu(\ln\frac{1-
  \epsilon}{\epsilon} + \ln(K-1))`, :math:`w_j \leftarrow w_j e^{\alpha
  s_j}` (then / sum). The alpha has SAMME's form (with shrinkage), but the
  update is not SAMME's: with :math:`s_j = \pm 1` a missed example gains
  the factor :math:`e^{2\alpha}` over a hit one, where SAMME's
  :math:`w_j e^{\alpha\,\mathrm{miss}_j}` gives :math:`e^{\alpha}`. We
  follow the code (``tests/reference/test_ref_benn.py`` pins it).

(``nu`` the shrinkage, 0.1 in the code; ``K`` the number of classes; ``c``
= 5000 for CIFAR-10's N = 50000 in the code, N / 10 by default here).
``epsilon`` is clipped to ``[1e-10, 1 - 1e-10]`` so a perfect (or useless)
member gets a large finite alpha; negative weights from variant C are
clipped to 0 when sampling.

Voting over members i with weights ``alpha_i`` (1 for bagging), member
scores ``f_i(x)`` (the network's outputs):

* hard: :math:`\arg\max_c \sum_i \alpha_i\,1[\arg\max f_i(x) = c]`;
* soft ("soft max vote", best in the README): :math:`\arg\max_c \sum_i
  \alpha_i f_i(x)_c`.

Ties go to the lowest class index (as ``argmax`` and the official loop).

References:
  Zhu, Dong & Su, "Binary Ensemble Neural Network: More Bits per Network or
  More Networks per Bit?", CVPR 2019 (code ``XinDongol/BENN-PyTorch``,
  ``cifar/{AB,SB}/{bagging,boosting}``).
  Hastie, Rosset, Zhu & Zou, "Multi-class AdaBoost" (SAMME), 2009: the
  form of variant D's alpha (its weight update differs, see above).
"""
from __future__ import annotations

import numpy as np

ENSEMBLES = ("bagging", "boost_a", "boost_b", "boost_c", "boost_d")
BOOST_VARIANTS = ("a", "b", "c", "d")
_EPS_CLIP = 1e-10


def bootstrap_indices(seed: int, member: int, n: int) -> np.ndarray:
  """``n`` indices in ``[0, n)`` drawn with replacement, a pure function of
  ``(seed, member)``.

  Example:
    >>> a = bootstrap_indices(0, 1, 5)
    >>> bool((a == bootstrap_indices(0, 1, 5)).all()), a.shape
    (True, (5,))
  """
  return np.random.default_rng([int(seed), int(member), 0xB]).integers(
      0, n, size=n)


def resample_indices(seed: int, member: int, weights) -> np.ndarray:
  """``len(weights)`` indices drawn with replacement with probabilities
  ``max(w, 0) / sum(max(w, 0))`` (boosting by resampling); a pure function
  of ``(seed, member, weights)``."""
  w = np.clip(np.asarray(weights, np.float64), 0.0, None)
  if not np.isfinite(w).all() or w.sum() <= 0:
    raise ValueError("boosting weights must be finite with a positive sum")
  rng = np.random.default_rng([int(seed), int(member), 0xA])
  return rng.choice(w.shape[0], size=w.shape[0], replace=True, p=w / w.sum())


def weighted_error(weights, miss) -> float:
  """``sum(w * miss) / sum(w)``."""
  w = np.asarray(weights, np.float64)
  return float(np.sum(w * np.asarray(miss, np.float64)) / np.sum(w))


def member_alpha(eps: float, variant: str, *, num_classes: int,
                 shrinkage: float = 0.1) -> float:
  """The member weight of a boosting variant (see the module docstring).

  Example:
    >>> round(member_alpha(0.25, "a", num_classes=10), 6)  # 0.5 ln 3
    0.549306
    >>> round(member_alpha(0.25, "d", num_classes=10), 6)  # .1(ln 3 + ln 9)
    0.329584
  """
  eps = float(np.clip(eps, _EPS_CLIP, 1.0 - _EPS_CLIP))
  logit = np.log((1.0 - eps) / eps)
  if variant in ("a", "b", "c"):
    return float(0.5 * logit)
  if variant == "d":
    return float(shrinkage * (logit + np.log(num_classes - 1)))
  raise ValueError(f"unknown boosting variant {variant!r}; choose one of: "
                   f"{', '.join(BOOST_VARIANTS)}")


def boost_weights(weights, miss, variant: str, *, num_classes: int,
                  shrinkage: float = 0.1, c_scale: float | None = None):
  """One boosting round: ``(new_weights, alpha, eps)``.

  Args:
    weights: (N,) example weights before the round.
    miss: (N,) 1 where the new member misclassifies the example, else 0.
    variant: ``"a"``, ``"b"``, ``"c"`` or ``"d"`` (the BENN code's
      ``boostD``: SAMME's alpha, weights ``w e^{alpha s}``).
    num_classes: K of variant D's ``ln(K - 1)``.
    shrinkage: variant D's factor on alpha (0.1 in the code).
    c_scale: variant C's constant (default N / 10: 5000 for N = 50000).

  Returns:
    new weights (float64 (N,); A and D normalised to sum 1, B and C as the
    code leaves them), alpha (float), eps (float).

  Example:
    >>> w, a, e = boost_weights([0.25] * 4, [1, 0, 0, 0], "a",
    ...                         num_classes=2)
    >>> e, round(a, 4), [round(float(x), 4) for x in w]
    (0.25, 0.5493, [0.5, 0.1667, 0.1667, 0.1667])
  """
  w = np.asarray(weights, np.float64)
  miss = np.asarray(miss, np.float64)
  if w.shape != miss.shape or w.ndim != 1:
    raise ValueError(f"weights {w.shape} and miss {miss.shape} must be "
                     "equal 1-D shapes")
  eps = weighted_error(w, miss)
  alpha = member_alpha(eps, variant, num_classes=num_classes,
                       shrinkage=shrinkage)
  s = np.where(miss > 0, 1.0, -1.0)
  if variant in ("a", "d"):
    new = w * np.exp(alpha * s)
    new = new / new.sum()
  elif variant == "b":
    new = 1.0 / ((1.0 / w - 1.0) * np.exp(-alpha * s) + 1.0)
  else:
    c = w.shape[0] / 10.0 if c_scale is None else float(c_scale)
    v = (1.0 - w) * np.exp(-alpha * s)
    new = 1.0 - c * v / np.sum(np.abs(v))
  return new, alpha, eps


def hard_vote(scores, alphas=None) -> np.ndarray:
  """``argmax_c sum_i alpha_i 1[argmax f_i = c]`` for scores (M, N, C).

  Example:
    >>> import numpy as np
    >>> s = np.array([[[1., 0.]], [[0., 1.]], [[0., 2.]]])  # 3 members, 1 x
    >>> hard_vote(s).tolist(), hard_vote(s, [3.0, 1.0, 1.0]).tolist()
    ([1], [0])
  """
  scores = np.asarray(scores)
  m, _, c = scores.shape
  a = np.ones(m) if alphas is None else np.asarray(alphas, np.float64)
  votes = np.eye(c)[np.argmax(scores, -1)]           # (M, N, C)
  return np.argmax(np.tensordot(a, votes, axes=1), -1)


def soft_vote(scores, alphas=None) -> np.ndarray:
  """``argmax_c sum_i alpha_i f_i(x)_c`` for scores (M, N, C).

  Example:
    >>> import numpy as np
    >>> s = np.array([[[1., 0.]], [[0., 1.]], [[0., 2.]]])
    >>> soft_vote(s).tolist(), soft_vote(s, [3.0, 1.0, 1.0]).tolist()
    ([1], [0])
  """
  scores = np.asarray(scores, np.float64)
  a = np.ones(scores.shape[0]) if alphas is None else np.asarray(
      alphas, np.float64)
  return np.argmax(np.tensordot(a, scores, axes=1), -1)


def ensemble_curve(scores, labels, alphas=None) -> list[dict]:
  """Accuracy of the first k members, k = 1..M, by both votes.

  Returns:
    ``[{"size": k, "hard_vote_accuracy": .., "soft_vote_accuracy": ..}]``.
  """
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  a = np.ones(scores.shape[0]) if alphas is None else np.asarray(alphas)
  out = []
  for k in range(1, scores.shape[0] + 1):
    out.append({
        "size": k,
        "hard_vote_accuracy": float(np.mean(
            hard_vote(scores[:k], a[:k]) == labels)),
        "soft_vote_accuracy": float(np.mean(
            soft_vote(scores[:k], a[:k]) == labels)),
    })
  return out
