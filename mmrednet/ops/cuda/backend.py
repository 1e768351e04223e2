"""The CUDA kernels of the ops, or the portable path where they cannot serve a call.

Without CuPy (the optional ``cuda`` extra;
:func:`~mmrednet.ops.cuda.launcher.install_hint` names the CuPy wheel for
torch's CUDA version) CUDA tensors take the portable PyTorch path, after one
warning that names the package to install; they never fail for want of it,
nor for a compiler that fails. The portable path also serves what the
kernels do not cover: dtypes other than float16/bfloat16/float32/float64 and
planes with a side of 2**30 or more.

Each compiled entry point checks itself the first time it runs on a device
(:mod:`~mmrednet.ops.cuda.selfcheck`): one that gives a wrong result there is
replaced by the portable path, with one warning, before its result is used.
During a CUDA graph capture an entry point runs only if it ran before: the
compile, the module load and the check's copy to the host wait for a call
outside the capture, and the call in the capture takes the portable path.
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .. import portable
from . import launcher, selfcheck
from .planning import MAX_SIDE, TAGS, plan

_failures: Dict[Tuple[str, Optional[int]], str] = {}  # (dtype tag, device) -> why compiling failed
_warned = set()


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f'mmrednet: CUDA involution runs the slow portable PyTorch path: {reason}',
                      RuntimeWarning, stacklevel=4)


def _capturing() -> bool:
    return torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing()


def _use_kernels(tensor: Tensor, input_shape: Sequence[int], padding: Sequence[int]) -> bool:
    """Whether the kernels take this call; otherwise the portable path does."""
    if tensor.dtype not in TAGS or not launcher.runs_on(tensor.device):
        return False
    if any(size + 2 * pad >= MAX_SIDE for size, pad in zip(input_shape[2:], padding, strict=True)):
        return False
    reason = launcher.unavailable_reason()
    if reason is None:
        reason = _failures.get((TAGS[tensor.dtype], tensor.device.index))
    if reason is not None:
        _warn_once(reason)
        return False
    return True


def _run(op: str, a: Tensor, b: Tensor, result: Tensor, input_shape, weight_shape, stride,
         padding, dilation) -> bool:
    """Launch ``op`` into ``result``; False if the kernel could not be compiled, failed its
    first-use self-check or has not run before a graph capture (the caller then takes the
    portable path)."""
    device = a.device
    sm_count = launcher.sm_count(device)
    launch = plan(op, input_shape, weight_shape, stride, padding, dilation, a.dtype, sm_count)
    if _capturing() and not (launcher.loaded(launch.kernel, device)
                             and selfcheck.decided(launch.kernel, device)):
        return False
    try:
        launcher.load(launch.kernel, a.dtype, device)
    except Exception as exc:  # NVRTC missing or failing: fall back, say why once
        reason = f'compiling the kernels failed ({type(exc).__name__}: {exc})'
        _failures[(TAGS[a.dtype], device.index)] = reason
        _warn_once(reason)
        return False
    if not selfcheck.verified(op, launch.kernel, a.dtype, device, sm_count):
        return False
    launcher.launch(launch, (a, b, result))
    return True


def forward(input: Tensor, weight: Tensor, stride: List[int], padding: List[int],
            dilation: List[int]) -> Tensor:
    """``mmrednet::involution`` on CUDA tensors (the launcher's 2-D layout)."""
    if _use_kernels(input, input.shape, padding):
        x, w = input.contiguous(), weight.contiguous()
        out = x.new_empty(x.shape[0], x.shape[1], w.shape[4], w.shape[5])
        if out.numel() == 0 or _run('forward', x, w, out, x.shape, w.shape, stride, padding,
                                    dilation):
            return out
    return portable.forward(input, weight, stride, padding, dilation)


def grad_input(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
               padding: List[int], dilation: List[int]) -> Tensor:
    """``mmrednet::involution_grad_input`` on CUDA tensors."""
    if _use_kernels(grad_output, input.shape, padding):
        go, w = grad_output.contiguous(), weight.contiguous()
        result = go.new_empty(input.shape)
        if result.numel() == 0 or _run('grad_input', go, w, result, input.shape, w.shape,
                                       stride, padding, dilation):
            return result
    return portable.grad_input(grad_output, input, weight, stride, padding, dilation)


def grad_weight(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
                padding: List[int], dilation: List[int]) -> Tensor:
    """``mmrednet::involution_grad_weight`` on CUDA tensors."""
    if _use_kernels(grad_output, input.shape, padding):
        go, x = grad_output.contiguous(), input.contiguous()
        result = go.new_empty(weight.shape)
        if result.numel() == 0 or _run('grad_weight', go, x, result, x.shape, weight.shape,
                                       stride, padding, dilation):
            return result
    return portable.grad_weight(grad_output, input, weight, stride, padding, dilation)
