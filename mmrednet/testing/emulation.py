"""The host emulation of the CUDA kernels: build ``kernels/emulation/`` harnesses and run them.

``harness.cpp`` runs the op's kernels (``kernels/involution_cuda.cu``),
``fused_harness.cpp`` the fused op's (``kernels/involution_fused_cuda.cu``).

The harness is the kernel source compiled for the host (see its header for why
that is faithful), as a standalone executable that this module drives through
a pipe. Standalone rather than loaded into Python: the sanitizers then
instrument the whole process they run in (ThreadSanitizer cannot be preloaded
into an uninstrumented, already threaded interpreter reliably), no torch
allocation hides a buffer overflow in its own slack, and a sanitizer report
ends the harness, not the test process.

Modes:

* ``plain``: ``-O2``, GPU threads one after another;
* ``asan``: AddressSanitizer + UndefinedBehaviorSanitizer, every tensor in an
  allocation of its exact size, any report fatal;
* ``tsan``: ThreadSanitizer, GPU threads spread over host threads with no
  synchronisation between them, so that every pair of GPU threads runs
  concurrently in some pass (see the harness).

Builds are cached by a hash of the sources, the flags and the compiler, in
``$MMREDNET_EMULATION_CACHE`` or ``~/.cache/mmrednet/emulation``.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from mmrednet.ops import cuda

HARNESS_DIR = cuda.KERNEL_DIR / 'emulation'
HARNESS = HARNESS_DIR / 'harness.cpp'
FUSED_HARNESS = HARNESS_DIR / 'fused_harness.cpp'
CONVERSIONS = HARNESS_DIR / 'conversions_exhaustive.cpp'
# What the builds include (hashed into the cache key of every build).
SOURCES = (HARNESS_DIR / 'cuda_host.h', HARNESS_DIR / 'harness_runtime.h', cuda.SOURCE,
           cuda.FUSED_SOURCE)

_COMMON = ('-std=c++17', '-Wall', '-Wextra', '-Werror', '-Wno-unknown-pragmas', '-pthread',
           '-rdynamic')  # -rdynamic: the harness finds entry points by name (dlsym)
FLAGS: Dict[str, tuple] = {
    'plain': ('-O2', ),
    'asan': ('-O1', '-g', '-fno-omit-frame-pointer', '-fsanitize=address,undefined',
             '-fno-sanitize-recover=all'),
    'tsan': ('-O1', '-g', '-fsanitize=thread'),
}
# Leak checking is off: it needs ptrace, which containers often deny, and the
# kernels allocate nothing.
SANITIZER_ENV = {
    'ASAN_OPTIONS': 'detect_leaks=0:halt_on_error=1:abort_on_error=0',
    'UBSAN_OPTIONS': 'print_stacktrace=1:halt_on_error=1',
    'TSAN_OPTIONS': 'halt_on_error=1:exitcode=66',
}
TSAN_WORKERS = 16  # host threads of the threaded emulation
_BLANK = 0xff  # the harness fills results with it: a NaN in every float format
_CONVERSIONS = {  # kind -> (input dtype, output dtype)
    'f16_to_f32': (np.uint16, np.float32),
    'bf16_to_f32': (np.uint16, np.float32),
    'f32_to_f16': (np.float32, np.uint16),
    'f32_to_bf16': (np.float32, np.uint16),
}


class EmulationError(RuntimeError):
    """The harness failed: a sanitizer report, a crash or a protocol error.

    Attributes:
        report (str): what the harness wrote to stderr (the sanitizer's report).
    """

    def __init__(self, message: str, report: str = ''):
        super().__init__(f'{message}\n{report}' if report else message)
        self.report = report


def cache_dir() -> Path:
    default = Path.home() / '.cache' / 'mmrednet' / 'emulation'
    return Path(os.environ.get('MMREDNET_EMULATION_CACHE', default))


def compiler() -> str:
    cxx = os.environ.get('CXX') or shutil.which('g++')
    if cxx is None:
        raise EmulationError('the CUDA emulation needs a C++17 compiler: g++ not on PATH '
                             '(or set CXX)')
    return cxx


def build(mode: str = 'asan', params: cuda.LaunchParams = cuda.PARAMS,
          harness: Path = HARNESS) -> Path:
    """The ``harness`` executable for ``mode`` and launch ``params`` (built once, then cached)."""
    if mode not in FLAGS:
        raise ValueError(f'mode must be one of {sorted(FLAGS)}, got {mode!r}')
    _require_harness()
    return _build(f'{harness.stem}-{mode}', harness, [*FLAGS[mode], *cuda.macros(params)])


def build_conversion_check() -> Path:
    """``conversions_exhaustive.cpp``: every float through the 16-bit conversions.

    Its second oracle is torch's own C++ conversion code, header-only in
    torch's include directory.
    """
    _require_harness()
    return _build('conversions-exhaustive', CONVERSIONS,
                  ['-O2', f'-I{Path(torch.__file__).parent / "include"}'])


def _require_harness() -> None:
    """The harness is CI's, not the wheel's: it needs the ``kernels/`` of a source checkout."""
    if not HARNESS.is_file():
        raise EmulationError(f'the CUDA emulation needs the harness {HARNESS}, which only a '
                             'source checkout of mmrednet has (kernels/emulation/): run it '
                             'from a clone')


def _build(name: str, source: Path, flags: Sequence[str]) -> Path:
    cxx = compiler()
    command = [cxx, *_COMMON, *flags, f'-I{cuda.KERNEL_DIR}', f'-I{HARNESS_DIR}', str(source),
               '-ldl']
    version = subprocess.run([cxx, '--version'], capture_output=True, text=True,
                             check=False).stdout
    digest = hashlib.sha256('\0'.join([*command, version]).encode())
    for path in (source, *SOURCES):
        digest.update(path.read_bytes())
    target = cache_dir() / digest.hexdigest()[:20] / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time per target (parallel test workers wait for it rather than
    # build it twice), into a temporary file renamed into place.
    with open(target.parent / f'.{name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            _compile(command, target, name)
    return target


def _compile(command: Sequence[str], target: Path, name: str) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run([*command, '-o', str(built)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise EmulationError(f'building {name} failed: {" ".join(command)}',
                                 result.stderr)
        os.replace(built, target)


class Emulator:
    """A running harness process; entry points run on the host as on the GPU.

    Use as a context manager. ``workers`` > 0 runs GPU threads concurrently on
    that many host threads (the mode for ThreadSanitizer). ``harness``
    :data:`FUSED_HARNESS` runs the fused op's entry points (:meth:`launch_fused`).
    """

    def __init__(self, mode: str = 'asan', params: cuda.LaunchParams = cuda.PARAMS,
                 workers: Optional[int] = None, harness: Path = HARNESS):
        self.mode, self.params = mode, params
        self.workers = (TSAN_WORKERS if mode == 'tsan' else 0) if workers is None else workers
        self._executable = build(mode, params, harness)
        self.loads: Optional[Tuple[int, int]] = None
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen([str(self._executable)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr,
                                         env={**os.environ, **SANITIZER_ENV})

    def __enter__(self) -> 'Emulator':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write(b'quit\n')
                self._process.stdin.close()
            except OSError:
                pass
            self._process.wait(timeout=60)
        for pipe in (self._process.stdin, self._process.stdout):  # also after a crash
            try:
                pipe.close()
            except OSError:  # stdin's buffered request to a harness that died
                pass
        self._stderr.close()

    def _report(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors='replace')

    def _request(self, line: str, payload: Sequence[bytes],
                 reply_bytes: int) -> Tuple[List[str], bytes]:
        """Send a request; the words after "ok" and the binary reply."""
        try:
            self._process.stdin.write(line.encode() + b'\n')
            for chunk in payload:
                self._process.stdin.write(chunk)
            self._process.stdin.flush()
            status = self._process.stdout.readline()
            words = status.decode(errors='replace').split()
            if words[:1] == ['ok']:
                reply = self._process.stdout.read(reply_bytes)
                if len(reply) == reply_bytes:
                    return words[1:], reply
        except BrokenPipeError:
            status = b''
        code = self._process.wait(timeout=60)
        raise EmulationError(f'the {self.mode} emulation failed on "{line.split()[1]}" (exit '
                             f'status {code}): {status.decode(errors="replace").strip()}',
                             self._report())

    def launch(self, launch: cuda.Launch, a: Tensor, b: Tensor, result_shape: Sequence[int],
               threads: int = cuda.THREADS, short: str = '-', duplicate: bool = False) -> Tensor:
        """Run ``launch`` with ``threads`` a block; the result, on the CPU.

        After a sequential run, ``self.loads`` holds the kernel's element loads
        from ``a`` and ``b``.

        Args:
            short: '-', or 'a', 'b', 'result': allocate that buffer one element
                short (a planted out-of-bounds access).
            duplicate: run every GPU thread twice, concurrently (a planted race).
        """
        dtype = a.dtype
        a = a.detach().cpu().contiguous()
        b = b.detach().cpu().contiguous()
        result = torch.empty(result_shape, dtype=dtype)
        size = result.element_size()
        line = ' '.join(str(v) for v in (
            'launch', launch.kernel, launch.blocks, threads, size, a.numel(), b.numel(),
            result.numel(), short, self.workers, int(duplicate), *launch.geometry))
        counts, reply = self._request(line, (_raw(a), _raw(b)), result.numel() * size)
        self.loads = tuple(int(v) for v in counts) if self.workers == 0 else None
        result.view(torch.uint8).view(-1).copy_(torch.frombuffer(bytearray(reply),
                                                                 dtype=torch.uint8))
        return result

    def launch_fused(self, launch: cuda.Launch, tensors: Sequence[Optional[Tensor]],
                     result_shape: Sequence[int], result_dtype: torch.dtype,
                     threads: int = cuda.THREADS, short: str = '-',
                     duplicate: bool = False) -> Tensor:
        """Run fused entry point ``launch`` (an :data:`FUSED_HARNESS` emulator); the result.

        Args:
            tensors: ``(input, hidden, span, bias, grad_output)``, one dtype; None
                where the entry point reads nothing (a null pointer).
            short: '-', or 'input', 'hidden', 'span', 'bias', 'grad_output', 'result':
                that buffer one element short.
            duplicate: run every GPU thread twice, concurrently (a planted race).
        """
        dtype = next(t for t in tensors if t is not None).dtype
        inputs = [torch.empty(0, dtype=dtype) if t is None else t.detach().cpu().contiguous()
                  for t in tensors]
        result = torch.empty(result_shape, dtype=result_dtype)
        line = ' '.join(str(v) for v in (
            'launch', launch.kernel, launch.blocks, threads, self.workers, int(duplicate), short,
            inputs[0].element_size(), result.element_size(), *(t.numel() for t in inputs),
            result.numel(), *launch.geometry))
        _, reply = self._request(line, [_raw(t) for t in inputs],
                                 result.numel() * result.element_size())
        if reply:
            result.view(torch.uint8).view(-1).copy_(torch.frombuffer(bytearray(reply),
                                                                     dtype=torch.uint8))
        return result

    def convert(self, kind: str, values: np.ndarray) -> np.ndarray:
        """The kernels' host conversion ``kind`` (e.g. 'f32_to_f16') applied to ``values``."""
        source, target = _CONVERSIONS[kind]
        values = np.ascontiguousarray(values, dtype=source)
        _, reply = self._request(f'convert {kind} {values.size}', (values.tobytes(), ),
                                 values.size * np.dtype(target).itemsize)
        return np.frombuffer(reply, dtype=target).copy()


def check_conversions_exhaustively() -> Tuple[bool, str]:
    """Run ``conversions_exhaustive``: whether every check passed, and its report."""
    result = subprocess.run([str(build_conversion_check())], capture_output=True, text=True,
                            check=False)
    return result.returncode == 0, (result.stdout + result.stderr).strip()


def _raw(tensor: Tensor) -> bytes:
    return tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b''
