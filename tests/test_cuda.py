"""The CUDA backend: kernel source, launcher and (on a GPU) values against the reference.

Without a GPU three things still run: every ``kernels/*.cu`` is compiled with
the local nvcc for the oldest supported architecture, sm_80 and sm_90; the
kernels are run on the CPU by a host emulation (they use no shared memory and
no synchronisation, so running their threads one after another is exact), fed
by the launcher's own ``plan``; and the launcher's fallback without CuPy.
"""
import ctypes
import math
import shutil
import subprocess
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmrednet.ops import cuda, involution, involution_reference
from mmrednet.ops._args import canonicalize, output_size

from .helpers import random_problem

KERNELS = Path(cuda.__file__).resolve().parents[2] / 'kernels'

# CUDA 13's nvcc dropped sm_70 (Volta); sm_75 (Turing) is the oldest it builds,
# so it stands in for the sm_70 of the issue. Older toolkits still build sm_70.
ARCHS = ('75', '80', '90')


def _nvcc_archs(nvcc):
    listed = subprocess.run([nvcc, '--list-gpu-arch'], check=False, capture_output=True,
                            text=True)
    return {line.strip().split('_')[-1] for line in listed.stdout.split()}


@pytest.mark.parametrize('source', sorted(KERNELS.glob('*.cu')), ids=lambda p: p.name)
def test_kernels_compile_with_nvcc(source, tmp_path):
    """A syntax or type error in a kernel cannot land: build it for three architectures."""
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        pytest.skip('nvcc is not on PATH (install the CUDA toolkit to compile the kernels)')
    supported = _nvcc_archs(nvcc)
    archs = [a for a in ('70', *ARCHS) if a in supported][:1] + list(ARCHS[1:])
    assert all(a in supported for a in archs), f'nvcc lacks one of sm_{archs}'
    gencode = [f'-gencode=arch=compute_{a},code=sm_{a}' for a in archs]
    command = [nvcc, '-std=c++17', '--threads', '2', '-Werror', 'all-warnings', '--fatbin',
               *gencode, str(source), '-o', str(tmp_path / 'kernels.fatbin')]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------
# Host emulation of the kernels, driven by the launcher's plan
# ---------------------------------------------------------------------------
_PRELUDE = r'''
#include <algorithm>
#include <cstring>
struct emu_dim3 { unsigned int x, y, z; };
static emu_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define asm(...)
template <typename T> static inline T __ldg(const T* p) { return *p; }
static inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) {
  unsigned int u; std::memcpy(&u, &f, 4); return u;
}
using std::min;
#include "involution_cuda.cu"
typedef void (*entry_t)(const void*, const void*, void*, long long, long long, long long,
                        long long, long long, long long, long long, long long, long long,
                        long long, long long, long long, long long, long long, long long,
                        long long);
extern "C" void emulate(void* fn, unsigned int blocks, unsigned int threads, const void* a,
                        const void* b, void* result, const long long* g) {
  entry_t f = reinterpret_cast<entry_t>(fn);
  gridDim.x = blocks; blockDim.x = threads;
  for (blockIdx.x = 0; blockIdx.x < blocks; ++blockIdx.x)
    for (threadIdx.x = 0; threadIdx.x < threads; ++threadIdx.x)
      f(a, b, result, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11],
        g[12], g[13], g[14], g[15]);
}
'''


@pytest.fixture(scope='module')
def emulator(tmp_path_factory):
    """The kernel source built for the host: entry points run one thread at a time.

    Covers the index logic of every entry point for float and double and the
    bfloat16 conversions of GPUs before sm_80; not the half conversions (PTX).
    """
    cxx = shutil.which('g++')
    if cxx is None:
        pytest.skip('g++ is not on PATH')
    build = tmp_path_factory.mktemp('emulation')
    (build / 'emulate.cpp').write_text(_PRELUDE)
    library = build / 'emulate.so'
    command = [cxx, '-std=c++17', '-O1', '-w', '-shared', '-fPIC', f'-I{KERNELS}',
               f'-DMMREDNET_THREADS={cuda.THREADS}', f'-DMMREDNET_ROWS={cuda.ROWS}',
               f'-DMMREDNET_CHANNELS={cuda.CHANNELS}', str(build / 'emulate.cpp'), '-o',
               str(library)]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return ctypes.CDLL(str(library))


def _emulate(lib, op, a, b, input_shape, weight_shape, geometry, sm_count=0, blocks=None,
             threads=None):
    """Run ``op`` as the launcher would (its plan), with an optional smaller grid."""
    launch = cuda.plan(op, input_shape, weight_shape, *geometry, a.dtype, sm_count)
    n, c = input_shape[:2]
    shape = {'forward': (n, c, *weight_shape[4:]), 'grad_input': input_shape,
             'grad_weight': weight_shape}[op]
    a, b = a.contiguous(), b.contiguous()
    result = torch.full(shape, float('nan'), dtype=a.dtype)  # every value must be written
    args = (ctypes.c_longlong * 16)(*launch.geometry)
    lib.emulate(ctypes.cast(getattr(lib, launch.kernel), ctypes.c_void_p),
                ctypes.c_uint(blocks or launch.blocks), ctypes.c_uint(threads or cuda.THREADS),
                ctypes.c_void_p(a.data_ptr()), ctypes.c_void_p(b.data_ptr()),
                ctypes.c_void_p(result.data_ptr()), args)
    return result, launch


def _reference(x, w, stride, padding, dilation, grad_out=None):
    """Output and both gradients of the unfold reference, in float64."""
    x = x.detach().double().requires_grad_()
    w = w.detach().double().requires_grad_()
    out = involution_reference(x, w, stride, padding, dilation)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                               dtype=torch.float64)
    grad_x, grad_w = torch.autograd.grad(out, (x, w), grad_out.double())
    return out.detach(), grad_x, grad_w, grad_out


def _problem(c, groups, size, kernel, stride, padding, dilation, n=2):
    """Anisotropic problems too: kernel/stride/padding/dilation as (h, w) pairs."""
    out = [output_size(s, k, st, p, d)
           for s, k, st, p, d in zip(size, kernel, stride, padding, dilation, strict=True)]
    x = torch.randn(n, c, *size, dtype=torch.float64)
    w = torch.randn(n, groups, *kernel, *out, dtype=torch.float64)
    return x, w


EMULATED = [
    # channels, groups, size, kernel, stride, padding, dilation: (h, w) pairs
    (32, 2, (9, 7), (3, 3), (1, 1), (1, 1), (1, 1)),  # k3s1, two chunks of 8 channels
    (24, 4, (9, 7), (3, 3), (2, 2), (1, 1), (1, 1)),  # k3s2, odd sizes
    (24, 2, (10, 9), (7, 7), (1, 1), (3, 3), (1, 1)),  # k7s1, 12 channels: a partial chunk
    (16, 1, (13, 11), (7, 7), (2, 2), (3, 3), (1, 1)),  # k7s2
    (8, 2, (11, 10), (7, 3), (1, 2), (3, 2), (1, 2)),  # k7s1 tile, strided dilated columns
    (6, 3, (12, 9), (3, 5), (2, 1), (1, 4), (1, 2)),  # k3s2 tile, odd channels a group
    (16, 4, (8, 11), (5, 5), (1, 1), (4, 4), (2, 2)),  # any: dilated rows
    (8, 8, (5, 6), (1, 1), (1, 1), (0, 0), (1, 1)),  # any: K=1, one channel a group
    (4, 2, (5, 6), (7, 7), (2, 2), (6, 6), (2, 2)),  # any: most taps outside
    (4, 1, (3, 4), (3, 3), (3, 3), (0, 2), (1, 1)),  # any: stride 3, no vertical padding
    (6, 2, (1, 13), (1, 5), (1, 2), (0, 2), (1, 1)),  # a 1-D problem
]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('channels,groups,size,kernel,stride,padding,dilation', EMULATED)
def test_emulated_kernels_match_reference(emulator, dtype, channels, groups, size, kernel,
                                          stride, padding, dilation):
    x, w = _problem(channels, groups, size, kernel, stride, padding, dilation)
    geometry = (list(stride), list(padding), list(dilation))
    out, grad_x, grad_w, grad_out = _reference(x, w, *geometry)
    x, w, grad_out = x.to(dtype), w.to(dtype), grad_out.to(dtype)
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=0)
    for sm_count in (0, 10**6):  # most channels a thread, and the fewest
        got, _ = _emulate(emulator, 'forward', x, w, x.shape, w.shape, geometry, sm_count)
        torch.testing.assert_close(got.double(), out, **tol)
        got, _ = _emulate(emulator, 'grad_input', grad_out, w, x.shape, w.shape, geometry,
                          sm_count)
        torch.testing.assert_close(got.double(), grad_x, **tol)
    got, _ = _emulate(emulator, 'grad_weight', grad_out, x, x.shape, w.shape, geometry)
    torch.testing.assert_close(got.double(), grad_w, **tol)


def test_emulated_grid_stride_loop(emulator):
    """Any grid is correct: one block of one warp walks all the work."""
    x, w = _problem(24, 2, (10, 9), (7, 7), (1, 1), (3, 3), (1, 1))
    geometry = ([1, 1], [3, 3], [1, 1])
    out, grad_x, grad_w, grad_out = _reference(x, w, *geometry)
    for op, a, b, want in (('forward', x, w, out), ('grad_input', grad_out, w, grad_x),
                           ('grad_weight', grad_out, x, grad_w)):
        got, launch = _emulate(emulator, op, a, b, x.shape, w.shape, geometry, blocks=1,
                               threads=32)
        assert launch.kernel.endswith('_k7s1_f64')
        torch.testing.assert_close(got, want)


def test_emulated_bfloat16_rounding(emulator):
    """The bfloat16 store of GPUs before sm_80 rounds to nearest even, like torch."""
    x = torch.randn(1, 4, 16, 16).to(torch.bfloat16)
    w = torch.randn(1, 1, 1, 1, 16, 16).to(torch.bfloat16) * 3
    x[0, 0, 0, :4] = torch.tensor([float('nan'), float('inf'), -float('inf'), 3e38])
    w[0, 0, 0, 0, 0, 3] = 2.0  # 6e38 overflows to inf
    geometry = ([1, 1], [0, 0], [1, 1])
    got, launch = _emulate(emulator, 'forward', x, w, x.shape, w.shape, geometry)
    assert launch.kernel == 'involution_forward_any_bf16'
    # One exact float product a value: rounding it to bfloat16 is all that differs.
    want = (x.float() * w.float()[:, :, 0, 0]).to(torch.bfloat16)
    torch.testing.assert_close(got, want, atol=0, rtol=0, equal_nan=True)


def test_plan_variants_and_grid():
    dtype = torch.float16
    rednet = ((32, 64, 56, 56), (32, 4, 7, 7, 56, 56), [1, 1], [3, 3], [1, 1])
    assert cuda.plan('forward', *rednet, dtype, 132).kernel == 'involution_forward_k7s1_f16'
    strided = ((32, 512, 14, 14), (32, 32, 7, 7, 7, 7), [2, 2], [3, 3], [1, 1])
    assert cuda.plan('grad_input', *strided, dtype, 132).kernel.startswith(
        'involution_grad_input_any_')  # a vertical stride leaves holes in a gather strip
    assert cuda.plan('grad_weight', *strided, dtype, 132).kernel.endswith('_k7s2_f16')
    dilated = ((2, 8, 9, 9), (2, 2, 3, 3, 9, 9), [1, 1], [2, 2], [2, 2])
    assert cuda.plan('forward', *dilated, dtype, 132).kernel.endswith('_any_f16')
    launch = cuda.plan('forward', *rednet, dtype, 132)
    n, c, g, h, w, ho, wo = launch.geometry[:7]
    per_thread = launch.geometry[-1]
    assert (n, c, g, h, w, ho, wo) == (32, 64, 4, 56, 56, 56, 56)
    assert per_thread == cuda.CHANNELS  # the big stage fills the GPU with 8 channels a thread
    items = n * g * math.ceil(c // g / per_thread) * math.ceil(ho / cuda.ROWS) * wo
    assert launch.blocks == math.ceil(items / cuda.THREADS)
    small = cuda.plan('forward', *strided, dtype, 132)
    assert small.geometry[-1] < cuda.CHANNELS  # the 7x7 stage trades reuse for threads


def test_without_cupy_warns_once_and_names_the_fix(monkeypatch):
    monkeypatch.setattr(cuda, 'AVAILABLE', True)
    monkeypatch.setattr(cuda, 'cupy', None)
    monkeypatch.setattr(cuda, '_warned', set())
    assert 'mmrednet[cuda]' in cuda.unavailable_reason()
    fake = types.SimpleNamespace(dtype=torch.float32, device=torch.device('cuda', 0))
    with pytest.warns(RuntimeWarning, match=r'mmrednet\[cuda\]'):
        assert not cuda._use_kernels(fake, (1, 4, 8, 8), [1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert not cuda._use_kernels(fake, (1, 4, 8, 8), [1, 1])


# ---------------------------------------------------------------------------
# On a GPU
# ---------------------------------------------------------------------------
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


class _NoFallback:
    """Stands in for the portable module: any fallback fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f'the CUDA backend fell back to portable.{name}')


@pytest.fixture
def kernels(monkeypatch):
    reason = cuda.unavailable_reason()
    assert reason is None, f'the CUDA kernels cannot run: {reason}'
    monkeypatch.setattr(cuda, 'portable', _NoFallback())


def _assert_close(got, want, dtype):
    scale = want.abs().max().item() or 1.0
    torch.testing.assert_close(got.double().cpu(), want.cpu(), rtol=0,
                               atol=TOLERANCE[dtype] * scale)


GPU_GEOMETRIES = EMULATED + [
    (64, 4, (56, 56), (7, 7), (1, 1), (3, 3), (1, 1)),  # a RedNet-50 stage
    (128, 8, (29, 27), (7, 7), (2, 2), (3, 3), (1, 1)),  # strided, odd sizes
    (32, 2, (17, 15), (3, 3), (1, 1), (1, 1), (1, 1)),  # the stem's K=3
]


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('channels,groups,size,kernel,stride,padding,dilation', GPU_GEOMETRIES)
def test_gpu_kernels_match_reference(kernels, dtype, channels, groups, size, kernel, stride,
                                     padding, dilation):
    x, w = _problem(channels, groups, size, kernel, stride, padding, dilation)
    x, w = x.to(dtype).double(), w.to(dtype).double()  # the reference sees the rounded inputs
    geometry = (list(stride), list(padding), list(dilation))
    n, c = x.shape[:2]
    grad_out = torch.randn(n, c, *w.shape[4:], dtype=torch.float64).to(dtype).double()
    out, grad_x, grad_w, _ = _reference(x, w, *geometry, grad_out=grad_out)
    xd, wd, god = (t.to('cuda', dtype) for t in (x, w, grad_out))
    _assert_close(cuda.forward(xd, wd, *geometry), out, dtype)
    _assert_close(cuda.grad_input(god, xd, wd, *geometry), grad_x, dtype)
    _assert_close(cuda.grad_weight(god, xd, wd, *geometry), grad_w, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kernel,stride,dilation,groups', [(1, 1, 1, 4), (3, 1, 1, 2),
                                                           (3, 2, 2, 1), (7, 1, 1, 2),
                                                           (7, 2, 1, 8)])
def test_gpu_op_autograd_matches_reference(kernels, dtype, kernel, stride, dilation, groups):
    x, w, args = random_problem(n=3, c=16, groups=groups, size=(15, 13), kernel=kernel,
                                stride=stride, dilation=dilation, requires_grad=False)
    x, w = x.to(dtype).double(), w.to(dtype).double()
    grad_out = torch.randn_like(involution_reference(x, w, **args)).to(dtype)
    out, grad_x, grad_w, _ = _reference(x, w, args['stride'], args['padding'],
                                        args['dilation'], grad_out=grad_out)
    xd = x.to('cuda', dtype).requires_grad_()
    wd = w.to('cuda', dtype).requires_grad_()
    got = involution(xd, wd, **args)
    assert got.dtype == dtype
    got.backward(grad_out.cuda())
    _assert_close(got, out, dtype)
    _assert_close(xd.grad, grad_x, dtype)
    _assert_close(wd.grad, grad_w, dtype)


@pytest.mark.gpu
def test_gpu_gradcheck_float64(kernels):
    for kernel, stride in ((3, 1), (7, 2), (5, 1)):
        x, w, args = random_problem(n=1, c=6, groups=2, size=(9, 8), kernel=kernel,
                                    stride=stride, device='cuda')
        assert torch.autograd.gradcheck(lambda a, b, args=args: involution(a, b, **args),
                                        (x, w))


@pytest.mark.gpu
def test_gpu_non_contiguous_and_empty(kernels):
    x, w, args = random_problem(n=2, c=16, groups=4, size=(9, 8), kernel=7, stride=2,
                                dtype=torch.float32, device='cuda')
    x_nc = x.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    w_nc = w.detach().permute(0, 1, 2, 3, 5, 4).contiguous().permute(0, 1, 2, 3, 5, 4)
    w_nc.requires_grad_()
    assert not x_nc.is_contiguous() and not w_nc.is_contiguous()
    out = involution(x_nc, w_nc, **args)
    torch.testing.assert_close(out, involution_reference(x, w, **args))
    grad_out = torch.randn_like(out).transpose(2, 3).contiguous().transpose(2, 3)
    out.backward(grad_out)
    want = torch.autograd.grad(involution_reference(x, w, **args), (x, w), grad_out)
    torch.testing.assert_close(x_nc.grad, want[0])
    torch.testing.assert_close(w_nc.grad, want[1])

    x, w, args = random_problem(n=0, c=8, groups=2, size=(5, 5), kernel=3, dtype=torch.float16,
                                device='cuda')
    out = involution(x, w, **args)
    assert out.shape == (0, 8, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


@pytest.mark.gpu
def test_gpu_more_than_2_31_elements(kernels):
    """A kernel tensor of 2.15e9 elements (4.3 GB in half): offsets past 2**31."""
    n, c, size, k, p = 1, 2, 6624, 7, 3
    need = (2 * n * k * k * size * size + 4 * n * c * size * size) * 2
    if torch.cuda.mem_get_info()[0] < need * 1.2:
        pytest.skip(f'needs {need / 2**30:.1f} GiB of free GPU memory')
    x = torch.randn(n, c, size, size, device='cuda', dtype=torch.float16)
    w = torch.randn(n, 1, k, k, size, size, device='cuda', dtype=torch.float16)
    assert w.numel() > 2**31
    geometry = ([1, 1], [p, p], [1, 1])
    out = cuda.forward(x, w, *geometry)
    grad_out = torch.randn_like(out)
    grad_w = cuda.grad_weight(grad_out, x, w, *geometry)
    grad_x = cuda.grad_input(grad_out, x, w, *geometry)
    # The last rows against the reference on a crop (the only real padding is below it).
    rows = 8
    crop = F.pad(x[:, :, -(rows + 2 * p):].double(), (p, p, 0, p)).cpu()
    w_crop = w[..., -(rows + p):, :].double().cpu()
    go_crop = grad_out[..., -(rows + p):, :].double().cpu()
    ref, ref_x, ref_w, _ = _reference(crop, w_crop, [1, 1], [0, 0], [1, 1], grad_out=go_crop)
    _assert_close(out[..., -(rows + p):, :], ref, torch.float16)
    _assert_close(grad_w[..., -(rows + p):, :], ref_w, torch.float16)
    # Input rows below the crop's first 2p rows get every contribution inside the crop.
    _assert_close(grad_x[..., -rows:, :], ref_x[..., 2 * p:2 * p + rows, p:-p], torch.float16)


class _TinyInvolutionNet(nn.Module):
    """conv -> kernel generation -> involution, as in a RedNet block."""

    def __init__(self, channels=32, groups=2, kernel=7):
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.span = nn.Conv2d(channels, groups * kernel * kernel, 1)

    def forward(self, x):
        x = self.conv(x)
        n, _, h, w = x.shape
        weight = self.span(x).view(n, self.groups, self.kernel, self.kernel, h, w)
        return involution(x, weight, padding=self.kernel // 2)


@pytest.mark.gpu
def test_gpu_autocast(kernels):
    model = _TinyInvolutionNet().cuda()
    x = torch.randn(2, 32, 20, 18, device='cuda')
    want = model(x)
    with torch.autocast('cuda', dtype=torch.float16):
        got = model(x)
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), want, atol=2e-2 * want.abs().max().item(), rtol=0)
    got.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.gpu
def test_gpu_torch_compile_has_no_graph_break(kernels):
    model = _TinyInvolutionNet().cuda()
    x = torch.randn(2, 32, 12, 12, device='cuda', requires_grad=True)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0
    compiled = torch.compile(model, fullgraph=True)
    got, want = compiled(x), model(x)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)  # conv algorithms may differ
    (grad_compiled, ) = torch.autograd.grad(got.sum(), x)
    (grad_eager, ) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(grad_compiled, grad_eager, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_gpu_opcheck(kernels, dtype):
    for kernel, stride, dilation in ((3, 1, 1), (7, 2, 1), (5, 2, 2)):
        x, w, geo = random_problem(n=2, c=8, groups=2, size=(9, 8), kernel=kernel,
                                   stride=stride, dilation=dilation, dtype=dtype,
                                   device='cuda')
        xx, ww, g, _ = canonicalize(x.detach(), w.detach(), **geo)
        torch.library.opcheck(torch.ops.mmrednet.involution.default,
                               (xx.requires_grad_(), ww.requires_grad_(), list(g.stride),
                                list(g.padding), list(g.dilation)))


@pytest.mark.gpu
def test_gpu_runs_on_the_current_stream(kernels):
    x, w, args = random_problem(n=4, c=64, groups=4, size=(56, 56), kernel=7,
                                dtype=torch.float32, device='cuda', requires_grad=False)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = involution(x, w, **args)
        total = out.sum()  # ordered after the kernel only if it ran on this stream
    torch.cuda.current_stream().wait_stream(stream)
    torch.testing.assert_close(total, involution_reference(x, w, **args).sum())


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_gpu_training_memory_saving_keeps_gradients(kernels, dtype):
    """Kernel regeneration and stem recomputation on the GPU, plain and under autocast."""
    from mmrednet.models import Involution, RedNet

    torch.manual_seed(0)
    model = RedNet(26, stem_kernel=7, base_channels=16, stem_channels=32).cuda().train()
    x = torch.randn(2, 3, 64, 64, device='cuda')
    grads = []
    for saving in (False, True):
        model.recompute_stem = saving
        for module in model.modules():
            if isinstance(module, Involution):
                module.regenerate_kernel = saving
        model.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=dtype, enabled=dtype != torch.float32):
            outs = model(x)
        sum(out.float().square().mean() for out in outs).backward()
        grads.append([p.grad for p in model.parameters()])
    for kept, regenerated in zip(*grads, strict=True):
        # cuDNN's weight gradients may sum in another order from run to run.
        scale = kept.abs().max().item() or 1.0
        torch.testing.assert_close(regenerated, kept, rtol=0, atol=TOLERANCE[dtype] * scale)
