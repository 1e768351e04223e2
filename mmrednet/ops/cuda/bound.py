"""The error bound a correct CUDA kernel cannot exceed, elementwise.

One definition for the first-use self-check (``selfcheck``) and the random
sweep of the tests and ``tools/check_cuda.py`` (``mmrednet.testing.sweep``).

Every kernel accumulates in float (double for double inputs) and rounds once at
the store. For a sum of ``n`` products the a-priori bound of floating-point
summation (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
section 3.1; it holds with or without FMA) gives for every element::

    |kernel - exact| <= (n u_acc + u_store (1 + n u_acc)) * sum_i |a_i| |b_i| + floor

``u_acc`` is the unit roundoff of the accumulator (2^-24 float, 2^-53 double),
``u_store`` that of the stored dtype (2^-11 half, 2^-8 bfloat16), ``n`` the
number of terms (Kh*Kw taps for forward and grad_input, C/G channels for
grad_weight), and the sum of magnitudes is the same op run on absolute values.
``floor`` covers subnormals: the rounding of a half result below 2^-14 and
CuPy's -ftz=true, which may flush each float partial sum below 2^-126 on the
device. The reference is float64 on the rounded inputs, within 2 n 2^-53 of
exact, which the tolerance adds. A correct kernel cannot exceed it; a missing
or wrong tap exceeds it wherever its product is above about
``u_store * sum |a||b|`` (in float and double that is every product but the
smallest).
"""
import math
from typing import Sequence, Tuple

import torch
from torch import Tensor

# dtype -> (unit roundoff of the accumulator, of the stored value)
UNIT_ROUNDOFF = {torch.float64: (2.0**-53, 2.0**-53), torch.float32: (2.0**-24, 2.0**-24),
                 torch.float16: (2.0**-24, 2.0**-11), torch.bfloat16: (2.0**-24, 2.0**-8)}
# dtype -> (largest flushed float partial sum, bound on the rounding error of a subnormal
# store; for double the smallest subnormal, as half of it is not a double)
SUBNORMAL_FLOOR = {torch.float64: (0.0, 2.0**-1074), torch.float32: (2.0**-126, 2.0**-150),
                   torch.float16: (2.0**-126, 2.0**-25), torch.bfloat16: (2.0**-126, 2.0**-134)}


def terms(op: str, kernel: Sequence[int], group_channels: int) -> int:
    """Products summed into one element of ``op``'s result: the taps, or (grad_weight) the
    channels of a group."""
    return group_channels if op == 'grad_weight' else math.prod(kernel)


def bound(dtype: torch.dtype, terms_: int, magnitude: Tensor) -> Tensor:
    """The elementwise error bound of the module docstring.

    Args:
        dtype: the kernel's dtype.
        terms_: products summed into an element (:func:`terms`).
        magnitude: ``sum |a_i| |b_i|`` per element: the op on absolute values, in float64.

    Returns:
        Tensor: the bound, shaped as ``magnitude``.
    """
    u_acc, u_store = UNIT_ROUNDOFF[dtype]
    flushed, subnormal_store = SUBNORMAL_FLOOR[dtype]
    relative = terms_ * u_acc + u_store * (1 + terms_ * u_acc) + 2 * terms_ * 2.0**-53
    return relative * magnitude + (terms_ * flushed + subnormal_store)


def errors(got: Tensor, want: Tensor, tolerance: Tensor) -> Tuple[Tensor, Tensor]:
    """``|got - want| / tolerance`` (0 where ``got`` is NaN) and the NaN mask (unwritten)."""
    got = got.detach().double()
    unwritten = torch.isnan(got)
    error = (got - want.to(got.device, torch.float64)).abs() / tolerance.to(got.device)
    return error.masked_fill(unwritten, 0.0), unwritten


def fused_terms(op: str, group_channels: int, hidden: int, taps: int, groups: int, pixels: int,
                slices: int) -> int:
    """The depth of the nested sums behind one element of a fused entry point's result,
    ``n`` of :func:`bound` (a sum of sums of depths ``a`` and ``b`` is bounded as one of
    ``a + b``, Higham section 3.1):

    * forward, grad_input: the kernel value (``hidden`` products and the bias) times
      x or grad_output, summed over the ``taps``;
    * grad_hidden: the kernel's gradient (``group_channels`` products) times the span
      weight, summed over ``groups * taps``;
    * grad_span_weight: the kernel's gradient times hidden, summed over a slice's
      pixels (at most ``pixels``), then over the ``slices``.
    """
    if op in ('forward', 'grad_input'):
        return hidden + 1 + taps + 1
    if op == 'grad_hidden':
        return group_channels + groups * taps + 1
    if op == 'grad_span_weight':
        return group_channels + 1 + pixels + slices
    raise ValueError(f'unknown fused involution entry point {op!r}')
