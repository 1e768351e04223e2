"""Loading and launching the CUDA kernels (``kernels/*.cu``) through CuPy.

The source is compiled with NVRTC (``cupy.RawModule``) once per dtype and
device in a process (CuPy also caches the binary on disk) and launched on
torch's current stream, so it is ordered with the surrounding torch work.
See the top of the ``.cu`` file for the design. The source is package data:
``mmrednet/kernels`` of an installed wheel, ``kernels/`` of a source checkout.
"""
import functools
import re
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .planning import PARAMS, TAGS, THREADS, Launch, LaunchParams, compile_options

try:
    import cupy
except ImportError:  # the optional extra is not installed
    cupy = None

AVAILABLE = torch.cuda.is_available()

_PACKAGE = Path(__file__).resolve().parents[2]
# ``mmrednet/kernels`` in an installed wheel, ``kernels/`` of a source checkout
# (editable installs): setup.py ships the one as the other.
KERNEL_DIR = next((d for d in (_PACKAGE / 'kernels', _PACKAGE.parent / 'kernels')
                   if (d / 'involution_cuda.cu').is_file()), _PACKAGE.parent / 'kernels')
SOURCE = KERNEL_DIR / 'involution_cuda.cu'
FUSED_SOURCE = KERNEL_DIR / 'involution_fused_cuda.cu'  # the fused op's (it includes SOURCE)
# torch's CUDA major version (``torch.version.cuda``) -> the CuPy wheel built for it.
CUPY_PACKAGES = {'12': 'cupy-cuda12x', '13': 'cupy-cuda13x'}
EXTRA_CUDA = '13'  # the CUDA major version of the CuPy that the ``cuda`` extra installs

_modules: Dict[tuple, object] = {}  # (source, dtype tag, device, params) -> RawModule
_functions: Dict[tuple, object] = {}  # (entry point, device, params) -> RawKernel
_sm_counts: Dict[int, int] = {}


def runs_on(device: torch.device) -> bool:
    """Whether the kernels take tensors on ``device``.

    One seam for the device type, so that the CPU tests can run the launcher's
    logic on CPU tensors (with the host emulation as the GPU) by replacing it.
    """
    return device.type == 'cuda'


def install_hint(torch_cuda: Optional[str] = torch.version.cuda) -> str:
    """How to install the CuPy wheel for the CUDA version torch was built with.

    The hint names the CuPy wheel itself, which is right however mmrednet was
    installed (from a checkout or a wheel); ``pip install "mmrednet[cuda]"``
    would ask the package index for mmrednet instead of using this one.

    Args:
        torch_cuda: ``torch.version.cuda`` (e.g. '13.0', '12.8'; None for a CPU build).
    """
    major = torch_cuda.split('.')[0] if torch_cuda else None
    if major not in CUPY_PACKAGES:
        return ('install the CuPy wheel for the CUDA version of your torch: python -c "import '
                'torch; print(torch.version.cuda)" prints the CUDA version of your torch; pip '
                'install cupy-cuda13x for 13.x, cupy-cuda12x for 12.x')
    extra = ('what the "cuda" extra installs' if major == EXTRA_CUDA else
             f'not the "cuda" extra, which installs {CUPY_PACKAGES[EXTRA_CUDA]} for '
             f'CUDA {EXTRA_CUDA}')
    return (f'install CuPy for this torch built with CUDA {torch_cuda}: pip install '
            f'{CUPY_PACKAGES[major]} ({extra})')


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


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (asked once per device)."""
    if device.index not in _sm_counts:
        _sm_counts[device.index] = torch.cuda.get_device_properties(device).multi_processor_count
    return _sm_counts[device.index]


def loaded(name: str, device: torch.device, params: LaunchParams = PARAMS) -> bool:
    """Whether entry point ``name`` is already compiled and loaded for ``device``."""
    return (name, device.index, params) in _functions


_INCLUDE = re.compile(r'^#include "([\w.]+)"$', re.MULTILINE)


def source_text(source: Path) -> str:
    """``source`` with each ``#include "name"`` replaced by the text of ``name`` beside it.

    NVRTC gets one text, so CuPy's binary cache (keyed on the text and the
    options) sees a change of an included file; the kernels include nothing else
    (no system header: see the top of ``involution_cuda.cu``).
    """
    return _INCLUDE.sub(lambda m: source_text(source.parent / m.group(1)), source.read_text())


def load(name: str, dtype: torch.dtype, device: torch.device, source: Path = SOURCE,
         params: LaunchParams = PARAMS):
    """The compiled entry point ``name`` of ``source`` for ``device`` (compiled on first use).

    Raises:
        RuntimeError: the kernels cannot run in this process (:func:`unavailable_reason`).
    """
    key = (name, device.index, params)
    function = _functions.get(key)
    if function is None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f'mmrednet CUDA kernels unavailable: {reason}')
        module_key = (source.name, TAGS[dtype], device.index, params)
        with cupy.cuda.Device(device.index):
            module = _modules.get(module_key)
            if module is None:
                module = cupy.RawModule(code=source_text(source),
                                        options=compile_options(dtype, params), backend='nvrtc')
                _modules[module_key] = module
            function = module.get_function(name)  # compiles (or loads CuPy's cache)
        _functions[key] = function
    return function


def launch(plan: Launch, tensors: Sequence[Optional[Tensor]], source: Path = SOURCE,
           params: LaunchParams = PARAMS, threads: int = THREADS) -> None:
    """Run ``plan`` on ``tensors`` with ``threads`` (<= THREADS) a block, unchecked.

    The one way the package launches a kernel: the backend after the self-check,
    the self-check on its probe, the sweep and ``tools/check_cuda.py``.

    Args:
        plan: from :func:`~mmrednet.ops.cuda.planning.plan` with the same ``params``.
        tensors: ``(a, b, result)``, contiguous, on one CUDA device: forward
            ``(input, weight, out)``, grad_input ``(grad_output, weight, grad_input)``,
            grad_weight ``(grad_output, input, grad_weight)``; the fused entry points
            ``(input, hidden, span, bias, grad_output, result)``, None (a null pointer)
            where the entry point reads nothing (see ``kernels/involution_fused_cuda.cu``).
        source: the ``.cu`` file holding ``plan.kernel``.
    """
    first = next(t for t in tensors if t is not None)
    device = first.device
    function = load(plan.kernel, first.dtype, device, source, params)
    args = (tuple(0 if t is None else t.data_ptr() for t in tensors)
            + tuple(np.int64(v) for v in plan.geometry))
    with cupy.cuda.Device(device.index):
        with cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream):
            function((plan.blocks, ), (threads, ), args)
