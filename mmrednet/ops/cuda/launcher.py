"""The CUDA backend: the kernels of ``kernels/involution_cuda.cu``, launched through CuPy.

The source is compiled with NVRTC (``cupy.RawModule``) once per dtype and
device in a process (CuPy also caches the binary on disk) and launched on
torch's current stream, so it is ordered with the surrounding torch work.
See the top of the ``.cu`` file for the design. The source is package data:
``mmrednet/kernels`` of an installed wheel, ``kernels/`` of a source checkout.

Without CuPy (it is the optional extra ``mmrednet[cuda]``) CUDA tensors take
the portable PyTorch path, after one warning that names the package to
install; they never fail for want of it, nor for a compiler that fails. The
portable path also serves what the kernels do not cover: dtypes other than
float16/bfloat16/float32/float64 and planes with a side of 2**30 or more.

Each compiled entry point checks itself the first time it runs on a device
(``cuda_selfcheck``): one that gives a wrong result there is replaced by the
portable path, with one warning, before its result is used.
"""
import functools
import os
import warnings
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from . import portable

try:
    import cupy
except ImportError:  # the optional extra is not installed
    cupy = None

AVAILABLE = torch.cuda.is_available()

_PACKAGE = Path(__file__).resolve().parents[1]
# ``mmrednet/kernels`` in an installed wheel, ``kernels/`` of a source checkout
# (editable installs): setup.py ships the one as the other.
KERNEL_DIR = next((d for d in (_PACKAGE / 'kernels', _PACKAGE.parent / 'kernels')
                   if (d / 'involution_cuda.cu').is_file()), _PACKAGE.parent / 'kernels')
SOURCE = KERNEL_DIR / 'involution_cuda.cu'
BASELINE_SOURCE = KERNEL_DIR / 'involution_cuda_baseline.cu'
# torch's CUDA major version (``torch.version.cuda``) -> the CuPy wheel built for it.
CUPY_PACKAGES = {'12': 'cupy-cuda12x', '13': 'cupy-cuda13x'}
EXTRA_CUDA = '13'  # the CUDA major version of the CuPy that ``mmrednet[cuda]`` installs


class LaunchParams(NamedTuple):
    """The kernels' compile-time launch parameters, passed to the source as macros.

    ``plan`` and ``compile_options`` take the same instance, so the launch and the
    binary agree; ``tools/check_cuda.py`` sweeps them on the user's GPU.
    """
    rows: int = 4  # output (grad_input: input) rows a thread in the register-tiled kernels
    channels: int = 8  # most channels of a group a thread computes (forward, grad_input)
    min_blocks: int = 1  # __launch_bounds__ hint: blocks of THREADS an SM should hold


THREADS = 256  # threads a block (the kernels' __launch_bounds__)
PARAMS = LaunchParams()  # what mmrednet launches
OPS = ('forward', 'grad_input', 'grad_weight')
TILED_KERNEL_SIZES = (3, 7)  # vertical kernel sizes with a register-tiled kernel
_TILED_STRIDES = {'forward': (1, 2), 'grad_input': (1, ), 'grad_weight': (1, 2)}
_MAX_SIDE = 2**30  # the kernels use int coordinates inside a plane
_MAX_GRID = 2**31 - 1
_TAGS = {torch.float32: 'f32', torch.float64: 'f64', torch.float16: 'f16', torch.bfloat16: 'bf16'}

_modules: Dict[tuple, object] = {}  # (source, dtype tag, device, params) -> RawModule
_functions: Dict[tuple, object] = {}  # (entry point, device, params) -> RawKernel
_failures: Dict[Tuple[str, int], str] = {}  # (dtype tag, device) -> why the kernels failed
_verdicts: Dict[Tuple[str, int], bool] = {}  # (entry point, device) -> passed its self-check
_warned = set()
_sm_counts: Dict[int, int] = {}


class Launch(NamedTuple):
    """What the launcher sends to one kernel: entry point, blocks, geometry arguments."""
    kernel: str
    blocks: int
    geometry: Tuple[int, ...]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def variant(op: str, kernel_h: int, stride_h: int, dilation_h: int) -> str:
    """``kKsS`` for a register-tiled kernel, ``any`` for the generic one."""
    # grad_input gathers: a vertical stride would leave holes in its strips.
    if dilation_h == 1 and kernel_h in TILED_KERNEL_SIZES and stride_h in _TILED_STRIDES[op]:
        return f'k{kernel_h}s{stride_h}'
    return 'any'


def entry_points(dtype: torch.dtype, baseline: bool = False) -> List[str]:
    """Every entry point the launcher may call for ``dtype`` (or of the baseline source)."""
    tag = _TAGS[dtype]
    if baseline:
        return [f'involution_baseline_{op}_{tag}' for op in OPS]
    names = []
    for op in OPS:
        tiled = [f'k{k}s{s}' for k in TILED_KERNEL_SIZES for s in _TILED_STRIDES[op]]
        names += [f'involution_{op}_{v}_{tag}' for v in (*tiled, 'any')]
    return names


def plan(op: str, input_shape: Sequence[int], weight_shape: Sequence[int],
         stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
         dtype: torch.dtype, sm_count: int, params: LaunchParams = PARAMS) -> Launch:
    """The launch of ``op`` ('forward', 'grad_input', 'grad_weight') for these shapes.

    Pure (no GPU needed), so the tests can check it. The kernels walk their work
    items in a grid-stride loop, so ``blocks`` decides speed only, not results.
    """
    n, c, h, w = input_shape
    _, g, kh, kw, ho, wo = weight_shape
    group_channels = c // g
    name = variant(op, kh, stride[0], dilation[0])
    tiled = name != 'any'
    if op == 'grad_weight':
        per_thread = 1  # unused: a grad_weight thread sums over all channels of its group
        items = n * g * (kw * _ceil_div(ho, params.rows) * wo if tiled else kh * kw * ho * wo)
    elif op in ('forward', 'grad_input'):
        rows, cols = (ho, wo) if op == 'forward' else (h, w)
        plane = (_ceil_div(rows, params.rows) if tiled else rows) * cols

        def items_for(channels: int) -> int:
            return n * g * _ceil_div(group_channels, channels) * plane

        # More channels a thread means fewer re-reads of the kernel values; fewer
        # means more threads. Trade the first for the second only while the grid
        # has under 1024 threads an SM (a few waves at the tiled kernels' ~160
        # registers a thread).
        per_thread = max(1, min(group_channels, params.channels))
        while per_thread > 2 and items_for(per_thread) < sm_count * 1024:
            per_thread = _ceil_div(per_thread, 2)
        items = items_for(per_thread)
    else:
        raise ValueError(f'unknown involution op {op!r}')
    blocks = max(1, min(_ceil_div(items, THREADS), _MAX_GRID))
    geometry = (n, c, g, h, w, ho, wo, kh, kw, stride[0], stride[1], padding[0], padding[1],
                dilation[0], dilation[1], per_thread)
    return Launch(f'involution_{op}_{name}_{_TAGS[dtype]}', blocks, geometry)


def compile_options(dtype: torch.dtype, params: LaunchParams = PARAMS) -> Tuple[str, ...]:
    """NVRTC options of the module for one dtype (the file holds all of them)."""
    return ('-std=c++17', '-DMMREDNET_SELECT_DTYPE', f'-DMMREDNET_WITH_{_TAGS[dtype].upper()}',
            *macros(params))


def macros(params: LaunchParams = PARAMS) -> Tuple[str, ...]:
    """The launch parameters as the ``-D`` options of the kernel source."""
    return (f'-DMMREDNET_THREADS={THREADS}', f'-DMMREDNET_ROWS={params.rows}',
            f'-DMMREDNET_CHANNELS={params.channels}',
            f'-DMMREDNET_MIN_BLOCKS={params.min_blocks}')


def _warn_once(key, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def install_hint(torch_cuda: Optional[str] = torch.version.cuda) -> str:
    """How to install the CuPy wheel for the CUDA version torch was built with.

    Args:
        torch_cuda: ``torch.version.cuda`` (e.g. '13.0', '12.8'; None for a CPU build).
    """
    major = torch_cuda.split('.')[0] if torch_cuda else None
    which = ('python -c "import torch; print(torch.version.cuda)" prints the CUDA version of '
             'your torch; pip install cupy-cuda13x for 13.x, cupy-cuda12x for 12.x')
    if major == EXTRA_CUDA:
        return (f'install CuPy: pip install "mmrednet[cuda]" (it installs '
                f'{CUPY_PACKAGES[major]}, for this torch built with CUDA {torch_cuda})')
    if major in CUPY_PACKAGES:
        return (f'install CuPy for this torch built with CUDA {torch_cuda}: pip install '
                f'{CUPY_PACKAGES[major]} (not the "mmrednet[cuda]" extra, which installs '
                f'{CUPY_PACKAGES[EXTRA_CUDA]} for CUDA {EXTRA_CUDA})')
    return f'install the CuPy wheel for the CUDA version of your torch: {which}'


def unavailable_reason() -> Optional[str]:
    """Why the CUDA kernels cannot run in this process, or None if they can."""
    if not AVAILABLE:
        return 'no CUDA device'
    if cupy is None:
        return f'CuPy is not installed; {install_hint()}'
    if not _source_present():
        return (f'the kernel source {SOURCE} is missing: the installation is incomplete '
                '(setup.py ships kernels/ as the package data mmrednet/kernels); reinstall '
                'mmrednet')
    return None


@functools.cache
def _source_present() -> bool:
    return SOURCE.is_file()  # checked once: every op call asks


def _sm_count(device: torch.device) -> int:
    if device.index not in _sm_counts:
        _sm_counts[device.index] = torch.cuda.get_device_properties(device).multi_processor_count
    return _sm_counts[device.index]


def load(name: str, dtype: torch.dtype, device: torch.device, source: Path = SOURCE,
         params: LaunchParams = PARAMS):
    """The compiled entry point ``name`` for ``device`` (compiled on first use)."""
    key = (name, device.index, params)
    function = _functions.get(key)
    if function is None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f'mmrednet CUDA kernels unavailable: {reason}')
        module_key = (source.name, _TAGS[dtype], device.index, params)
        with cupy.cuda.Device(device.index):
            module = _modules.get(module_key)
            if module is None:
                module = cupy.RawModule(code=source.read_text(),
                                        options=compile_options(dtype, params), backend='nvrtc')
                _modules[module_key] = module
            function = module.get_function(name)  # compiles (or loads CuPy's cache)
        _functions[key] = function
    return function


def _launch(launch: Launch, tensors: Sequence[Tensor], source: Path = SOURCE,
            params: LaunchParams = PARAMS, threads: int = THREADS) -> None:
    """Run ``launch`` on ``tensors`` (a, b, result) with ``threads`` (<= THREADS) a block."""
    device = tensors[0].device
    function = load(launch.kernel, tensors[0].dtype, device, source, params)
    args = tuple(t.data_ptr() for t in tensors) + tuple(np.int64(v) for v in launch.geometry)
    with cupy.cuda.Device(device.index):
        with cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream):
            function((launch.blocks, ), (threads, ), args)


# The device type the kernels take. Only the CPU tests change it (to 'cpu', with a
# stand-in for ``_launch``), to run this module's logic without a GPU.
DEVICE_TYPE = 'cuda'


def _use_kernels(tensor: Tensor, input_shape: Sequence[int], padding: Sequence[int]) -> bool:
    """Whether the kernels take this call; otherwise the portable path does."""
    if tensor.dtype not in _TAGS or tensor.device.type != DEVICE_TYPE:
        return False
    if any(size + 2 * pad >= _MAX_SIDE for size, pad in zip(input_shape[2:], padding, strict=True)):
        return False
    reason = unavailable_reason()
    if reason is None:
        reason = _failures.get((_TAGS[tensor.dtype], tensor.device.index))
    if reason is not None:
        _warn_once(reason, f'mmrednet: CUDA involution runs the slow portable PyTorch path: '
                   f'{reason}')
        return False
    return True


def selfcheck_enabled() -> bool:
    """Whether entry points check themselves on first use (``MMREDNET_CUDA_SELFCHECK=0``: no)."""
    return os.environ.get('MMREDNET_CUDA_SELFCHECK', '1') != '0'


def _verified(op: str, kernel: str, dtype: torch.dtype, device: torch.device,
              sm_count: int) -> bool:
    """Whether entry point ``kernel`` passed its first-use self-check on ``device``.

    Not yet checked during a CUDA graph capture: the check copies to the host,
    which a capture refuses, so that call takes the portable path and the check
    waits for a call outside the capture.
    """
    key = (kernel, device.index)
    if key not in _verdicts:
        if not selfcheck_enabled():
            return True
        if torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing():
            return False
        from . import cuda_selfcheck  # imports this module
        problem = cuda_selfcheck.check(op, kernel, dtype, device, sm_count)
        _verdicts[key] = problem is None
        if problem is not None:
            _warn_once(key, f'mmrednet: the CUDA kernel {kernel} gave a wrong result on '
                       f'{device} in its first-use self-check against the portable path: '
                       f'{problem}. It is not used: this entry point runs the slow portable '
                       'PyTorch path from now on in this process. Please run python '
                       'tools/check_cuda.py and open an issue with its report.')
    return _verdicts[key]


def _run(op: str, a: Tensor, b: Tensor, result: Tensor, input_shape, weight_shape, stride,
         padding, dilation) -> bool:
    """Launch ``op`` into ``result``; False if the kernel could not be compiled or failed its
    first-use self-check (the caller then takes the portable path)."""
    sm_count = _sm_count(a.device)
    launch = plan(op, input_shape, weight_shape, stride, padding, dilation, a.dtype, sm_count)
    try:
        load(launch.kernel, a.dtype, a.device)
    except Exception as exc:  # NVRTC missing or failing: fall back, say why once
        reason = f'compiling the kernels failed ({type(exc).__name__}: {exc})'
        _failures[(_TAGS[a.dtype], a.device.index)] = reason
        _warn_once(reason, f'mmrednet: CUDA involution runs the slow portable PyTorch path: '
                   f'{reason}')
        return False
    if not _verified(op, launch.kernel, a.dtype, a.device, sm_count):
        return False
    _launch(launch, (a, b, result))
    return True


def forward(input: Tensor, weight: Tensor, stride: List[int], padding: List[int],
            dilation: List[int]) -> Tensor:
    if _use_kernels(input, input.shape, padding):
        x, w = input.contiguous(), weight.contiguous()
        out = x.new_empty(x.shape[0], x.shape[1], w.shape[4], w.shape[5])
        if out.numel() == 0 or _run('forward', x, w, out, x.shape, w.shape, stride, padding,
                                    dilation):
            return out
    return portable.forward(input, weight, stride, padding, dilation)


def grad_input(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
               padding: List[int], dilation: List[int]) -> Tensor:
    if _use_kernels(grad_output, input.shape, padding):
        go, w = grad_output.contiguous(), weight.contiguous()
        result = go.new_empty(input.shape)
        if result.numel() == 0 or _run('grad_input', go, w, result, input.shape, w.shape,
                                       stride, padding, dilation):
            return result
    return portable.grad_input(grad_output, input, weight, stride, padding, dilation)


def grad_weight(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
                padding: List[int], dilation: List[int]) -> Tensor:
    if _use_kernels(grad_output, input.shape, padding):
        go, x = grad_output.contiguous(), input.contiguous()
        result = go.new_empty(weight.shape)
        if result.numel() == 0 or _run('grad_weight', go, x, result, x.shape, weight.shape,
                                       stride, padding, dilation):
            return result
    return portable.grad_weight(grad_output, input, weight, stride, padding, dilation)


def baseline(op: str, a: Tensor, b: Tensor, input_shape: Sequence[int],
             weight_shape: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int]) -> Tensor:
    """Benchmark baseline only: the one-thread-per-output kernels of
    ``kernels/involution_cuda_baseline.cu``, with the argument order of the ops
    above (forward: input, weight; grad_input: grad_output, weight; grad_weight:
    grad_output, input). Raises if CuPy is missing."""
    a, b = a.contiguous(), b.contiguous()
    n, c, _, _ = input_shape
    shape = {'forward': (n, c, weight_shape[4], weight_shape[5]), 'grad_input': input_shape,
             'grad_weight': weight_shape}[op]
    result = a.new_empty(shape)
    if result.numel():
        geometry = plan(op, input_shape, weight_shape, stride, padding, dilation, a.dtype,
                        1).geometry
        blocks = max(1, min(_ceil_div(result.numel(), THREADS), _MAX_GRID))
        name = f'involution_baseline_{op}_{_TAGS[a.dtype]}'
        _launch(Launch(name, blocks, geometry), (a, b, result), BASELINE_SOURCE)
    return result
