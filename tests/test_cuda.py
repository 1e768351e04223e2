"""The CUDA backend: the launcher's plan and fallback, and (on a GPU) values against the reference.

Without a GPU the kernels are proven elsewhere: compiled as the launcher
compiles them (``test_cuda_nvrtc.py``), run on the host under the sanitizers
in every dtype (``test_cuda_emulation.py``) and their traffic modelled
(``test_cuda_traffic.py``). The ``gpu`` tests below run on a CUDA machine, and
``tools/check_cuda.py`` runs them for GPU users.
"""
import configparser
import contextlib
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmrednet.ops import cuda, involution, involution_reference, portable
from mmrednet.ops._args import canonicalize
from mmrednet.ops.cuda import backend, launcher
from mmrednet.testing import sweep

from .helpers import random_problem
from .test_cuda_emulation import FIXED


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
    assert per_thread == cuda.PARAMS.channels  # the big stage fills the GPU with 8 a thread
    items = n * g * math.ceil(c // g / per_thread) * math.ceil(ho / cuda.PARAMS.rows) * wo
    assert launch.blocks == math.ceil(items / cuda.THREADS)
    small = cuda.plan('forward', *strided, dtype, 132)
    assert small.geometry[-1] < cuda.PARAMS.channels  # the 7x7 stage trades reuse for threads
    rows = cuda.LaunchParams(rows=2, channels=4)
    other = cuda.plan('forward', *rednet, dtype, 132, rows)
    assert other.geometry[-1] == 4
    assert other.blocks == math.ceil(n * g * 4 * math.ceil(ho / 2) * wo / cuda.THREADS)
    assert '-DMMREDNET_ROWS=2' in cuda.compile_options(dtype, rows)


def _fallback_calls(launcher):
    """Forward and both gradients through ``launcher``, twice, with every warning recorded;
    asserts each result is the portable path's."""
    x, w, args = random_problem(n=2, c=8, groups=2, size=(9, 8), kernel=3,
                                dtype=torch.float32, requires_grad=False)
    grad_out = torch.randn(x.shape)
    geometry = ([1, 1], [1, 1], [1, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')  # the launcher's own once-only is what is tested
        for _ in range(2):
            assert torch.equal(launcher.forward(x, w, *geometry),
                               portable.forward(x, w, *geometry))
            for op in ('grad_input', 'grad_weight'):
                assert torch.equal(getattr(launcher, op)(grad_out, x, w, *geometry),
                                   getattr(portable, op)(grad_out, x, w, *geometry))
    return [str(c.message) for c in caught if issubclass(c.category, RuntimeWarning)]


def test_without_a_gpu_the_kernels_say_so(cpu_launcher, monkeypatch):
    monkeypatch.setattr(launcher, 'AVAILABLE', False)  # whatever this machine has
    assert cuda.unavailable_reason() == 'no CUDA device'
    with pytest.raises(RuntimeError, match='no CUDA device'):
        launcher.load('involution_forward_any_f32', torch.float32, torch.device('cpu'))
    (message, ) = _fallback_calls(cuda)
    assert 'no CUDA device' in message


def test_cuda_without_cupy_falls_back_with_one_warning_naming_the_fix(cpu_launcher,
                                                                      monkeypatch):
    monkeypatch.setattr(launcher, 'cupy', None)
    (message, ) = _fallback_calls(cuda)
    assert 'CuPy is not installed' in message and cuda.install_hint() in message


class _CupyWhoseNvrtcFails:
    """CuPy whose NVRTC rejects the source, as a too old driver or toolkit would."""

    class CompileException(Exception):
        pass

    class cuda:  # noqa: N801 (cupy.cuda)
        @staticmethod
        def Device(index):  # noqa: N802 (cupy.cuda.Device)
            return contextlib.nullcontext()

    def __init__(self):
        self.compiles = 0

    def RawModule(self, code, options, backend):  # noqa: N802 (cupy.RawModule)
        assert backend == 'nvrtc' and '-DMMREDNET_WITH_F32' in options
        return self

    def get_function(self, name):
        self.compiles += 1
        raise self.CompileException("nvrtc: error: invalid value for --gpu-architecture (-arch)")


def test_cupy_whose_nvrtc_fails_falls_back_with_one_warning(cpu_launcher, monkeypatch):
    fake = _CupyWhoseNvrtcFails()
    monkeypatch.setattr(launcher, 'cupy', fake)
    (message, ) = _fallback_calls(cuda)
    assert 'compiling the kernels failed (CompileException: nvrtc: error' in message
    assert fake.compiles == 1  # the failure is remembered for the dtype, not retried
    assert list(backend._failures) == [('f32', None)]


@pytest.mark.parametrize('torch_cuda,package,extra', [
    ('13.0', 'cupy-cuda13x', True), ('12.8', 'cupy-cuda12x', False),
    ('12.4', 'cupy-cuda12x', False), (None, 'torch.version.cuda', False)])
def test_install_hint_follows_the_torch_build(torch_cuda, package, extra):
    """The hint names the CuPy wheel, right for a checkout and a wheel install alike:
    ``pip install "mmrednet[cuda]"`` would ask the package index for mmrednet."""
    hint = cuda.install_hint(torch_cuda)
    assert package in hint and 'mmrednet[' not in hint
    assert ('(what the "cuda" extra installs)' in hint) == extra
    if torch_cuda:
        assert f'pip install {package} (' in hint
    if torch_cuda and torch_cuda.startswith('12'):
        assert 'cupy-cuda13x for CUDA 13' in hint


def test_the_cuda_extra_installs_the_cupy_of_the_default_torch():
    """setup.cfg's cuda extra is the CuPy the hint names for CUDA 13 (torch 2.14.1's wheel);
    the tests extra has it too, for the CuPy compile gate."""
    config = configparser.ConfigParser()
    config.read(Path(cuda.__file__).parents[3] / 'setup.cfg')
    extras = config['options.extras_require']

    def packages(extra):
        return [line.split('#')[0].strip() for line in extras[extra].splitlines()
                if line.split('#')[0].strip()]

    assert packages('cuda') == [cuda.CUPY_PACKAGES[cuda.EXTRA_CUDA]] == ['cupy-cuda13x']
    assert 'cupy-cuda13x==14.2.0' in packages('tests')


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
    monkeypatch.setattr(backend, 'portable', _NoFallback())


def _assert_close(got, want, dtype):
    scale = want.abs().max().item() or 1.0
    torch.testing.assert_close(got.double().cpu(), want.cpu(), rtol=0,
                               atol=TOLERANCE[dtype] * scale)


GPU_CASES = FIXED + [
    sweep.Case(1, 2, 4, 16, (56, 56), (7, 7), (1, 1), (3, 3), (1, 1)),  # a RedNet-50 stage
    sweep.Case(2, 2, 8, 16, (29, 27), (7, 7), (2, 2), (3, 3), (1, 1)),  # strided, odd sizes
    sweep.Case(3, 2, 2, 16, (17, 15), (3, 3), (1, 1), (1, 1), (1, 1)),  # the stem's K=3
]


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', list(sweep.DTYPES.values()), ids=list(sweep.DTYPES))
@pytest.mark.parametrize('case', GPU_CASES, ids=lambda c: c.describe())
def test_gpu_kernels_match_reference(kernels, dtype, case):
    """The public backend functions (the device's own plan), within the sweep's error bound."""
    problem = sweep.problem(case, dtype)
    (x, w), (grad_out, _) = problem.operands['forward'], problem.operands['grad_input']
    x, w, grad_out = x.cuda(), w.cuda(), grad_out.cuda()
    geometry = problem.shapes[2:]
    got = {'forward': cuda.forward(x, w, *geometry),
           'grad_input': cuda.grad_input(grad_out, x, w, *geometry),
           'grad_weight': cuda.grad_weight(grad_out, x, w, *geometry)}
    sm_count = torch.cuda.get_device_properties(0).multi_processor_count
    for op, result in got.items():
        launch = cuda.plan(op, *problem.shapes, dtype, sm_count)
        outcome = sweep.compare(problem, op, result, launch, cuda.THREADS)
        assert outcome.passed, outcome


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
