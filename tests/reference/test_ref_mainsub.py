"""Main/subsidiary gate vs ``binary.subsidiary_keep``.

Reference: justimyhxu/MainSubsidaryBNN (commit
6cdcdde864a5ebc2d9407d6bff385007e354fec9):

* ``model/cuda/binactive_cuda_kernel.cu``: forward ``output = (input > 0) ?
  1 : (input < 0 ? -1 : 0)``; backward ``grad_h *= (inp > -1) * (inp <
  1)`` (an EXCLUSIVE window);
* ``model/mainsubsidary.py``, ``MainSubConv2d.forward`` with
  ``main_or_sub=False``: ``filtermask = (BinActive()(mask) - 1) / 2``,
  ``_weight = weight * filtermask + weight``, i.e. ``weight * (sign(M) +
  1) / 2`` with ``mask`` of shape ``(C_out, 1, 1, 1)``.

Both transcribed into NumPy below (forward and the chain-rule backward to
``mask``). Pinned departures (documented in ``binary/_mainsub.py``):

* ``sign(0)``: the kernel's 0 gives keep = 0.5; the project's ``+1`` gives 1;
* the STE window: the kernel passes the gradient for ``|M| < 1`` only; the
  project's window is inclusive, ``|M| <= 1`` (so at ``M = +-1`` the
  project's gradient is ``g / 2`` where the kernel's is 0).
"""

import jax
import jax.numpy as jnp
import numpy as np

import binary


# ---------------------------------------------------------------------------
# Transcription
# ---------------------------------------------------------------------------

def binactive_forward(x):
  return np.where(x > 0, 1.0, np.where(x < 0, -1.0, 0.0)).astype(x.dtype)


def binactive_backward(grad_h, x):
  return grad_h * ((x > -1) * (x < 1))


def mainsub_weight(weight, mask):
  """``_weight`` of MainSubConv2d.forward (main_or_sub=False)."""
  filtermask = (binactive_forward(mask) - 1) / 2
  return weight * filtermask + weight


def mainsub_mask_grad(weight, mask, grad_weight_eff):
  """d loss / d mask, given d loss / d _weight (autograd's chain rule)."""
  # _weight = weight * filtermask + weight: d/d filtermask = sum over the
  # broadcast axes of grad * weight; filtermask = (b - 1) / 2: times 1/2.
  d_filtermask = np.sum(grad_weight_eff * weight, axis=(1, 2, 3),
                        keepdims=True)
  return binactive_backward(d_filtermask / 2, mask)


# ---------------------------------------------------------------------------

C_OUT = 9
MASK = np.array([0.3, -0.2, 1e-5, -1e-5, 0.999, -0.999, 1.0, -1.0, 2.5],
                np.float32)


def _weights(seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(C_OUT, 2, 3, 3)).astype(np.float32)   # torch layout
  g = rng.normal(size=w.shape).astype(np.float32)
  return w, g


def _project(w, g, m):
  """Project: the kernel (kh, kw, in, out) times subsidiary_keep(M)."""
  kernel = jnp.asarray(np.transpose(w, (2, 3, 1, 0)))
  g_k = jnp.asarray(np.transpose(g, (2, 3, 1, 0)))
  eff, pullback = jax.vjp(lambda mm: kernel * binary.subsidiary_keep(mm),
                          jnp.asarray(m))
  eff = np.transpose(np.asarray(eff), (3, 2, 0, 1))
  return eff, np.asarray(pullback(g_k)[0])


def test_forward_and_gradient_away_from_the_edges():
  w, g = _weights()
  ref_eff = mainsub_weight(w, MASK.reshape(-1, 1, 1, 1))
  ref_grad = mainsub_mask_grad(w, MASK.reshape(-1, 1, 1, 1), g).ravel()
  eff, grad = _project(w, g, MASK)
  np.testing.assert_array_equal(eff, ref_eff)
  np.testing.assert_allclose(
      np.asarray(binary.subsidiary_keep(jnp.asarray(MASK))),
      (binactive_forward(MASK) + 1) / 2)
  inner = np.abs(MASK) != 1.0
  np.testing.assert_allclose(grad[inner], ref_grad[inner], rtol=1e-5,
                             atol=1e-6)
  assert grad[-1] == 0.0 and ref_grad[-1] == 0.0      # |M| = 2.5 > 1


def test_window_edge_departure():
  # At |M| = 1 the CUDA kernel blocks the gradient, the project passes it.
  w, g = _weights(1)
  ref_grad = mainsub_mask_grad(w, MASK.reshape(-1, 1, 1, 1), g).ravel()
  _, grad = _project(w, g, MASK)
  edge = np.abs(MASK) == 1.0
  np.testing.assert_array_equal(ref_grad[edge], 0.0)
  expected = 0.5 * np.sum(g * w, axis=(1, 2, 3))
  np.testing.assert_allclose(grad[edge], expected[edge], rtol=1e-5)
  assert np.all(grad[edge] != 0.0)


def test_sign_zero_departure():
  m = np.array([0.0, -0.0], np.float32)
  np.testing.assert_array_equal((binactive_forward(m) + 1) / 2, [0.5, 0.5])
  np.testing.assert_array_equal(np.asarray(binary.subsidiary_keep(
      jnp.asarray(m))), [1.0, 1.0])
