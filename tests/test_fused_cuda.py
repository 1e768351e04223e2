"""The fused op's CUDA kernels (``kernels/involution_fused_cuda.cu``), proven on the CPU.

* The host emulation (``kernels/emulation/fused_harness.cpp``) runs the seeded
  random sweep (the first ``fused_sweep.CI_CASES`` cases) in fp32/fp16/bf16/fp64
  against ``involution_fused_reference`` under ASan+UBSan and, threaded, under
  TSan; planted faults show each sanitizer sees what it must.
* The backend, with the emulation as the GPU (``cpu_launcher``): the kernels
  serve the three ops after their first-use self-check against the composition;
  a wrong entry point, a compile failure or an unsupported call fall back to the
  composition, per op.
* ``gpu`` tests run the real kernels on a CUDA device (they skip without one).
"""
import threading
import warnings

import pytest
import torch

from mmrednet.ops import cuda, involution_fused, portable
from mmrednet.ops.cuda import fused_backend, fused_planning, fused_selfcheck, launcher, selfcheck
from mmrednet.ops.reference import involution_fused_reference
from mmrednet.testing import emulation, fused_sweep, sweep

from .helpers import assert_all_passed

CI_CASES = fused_sweep.random_cases(fused_sweep.CI_CASES)
DTYPES = list(sweep.DTYPES.values())


@pytest.fixture(scope='module')
def asan():
    with emulation.Emulator('asan', harness=emulation.FUSED_HARNESS) as emulator:
        yield emulator


# ---------------------------------------------------------------------------
# The random sweep on the host emulation, under the sanitizers
# ---------------------------------------------------------------------------
def test_ci_sweep_spans_the_geometry_space():
    assert fused_sweep.random_cases(fused_sweep.CI_CASES + 3)[:fused_sweep.CI_CASES] == CI_CASES
    geometries = [c.case for c in CI_CASES]
    assert {c.grid for c in geometries} == {'plan', 'fewer', 'more'}
    assert any(len(c.size) == 1 for c in geometries)
    assert {True, False} == {c.has_bias for c in CI_CASES}
    hidden = {c.hidden for c in CI_CASES}
    assert min(hidden) <= 8 < max(hidden)  # one chunk and several, with remainders
    assert {k for c in geometries for k in c.kernel} >= {1, 3, 7}
    assert {s for c in geometries for s in c.stride} == {1, 2, 3}
    assert {d for c in geometries for d in c.dilation} == {1, 2, 3}
    forward = {fused_planning.plan('forward', c.shapes(), torch.float32, 132).kernel
               for c in CI_CASES}
    assert forward == {n for n in fused_planning.entry_points(torch.float32) if '_forward_' in n}


@pytest.mark.parametrize('part', range(2))
def test_random_sweep_under_asan_and_ubsan(asan, part):
    cases = CI_CASES[part::2]
    outcomes = fused_sweep.run_sweep(cases, asan.launch_fused)
    assert_all_passed(outcomes, len(cases) * len(DTYPES) * len(fused_sweep.OPS))


def test_random_sweep_threaded_under_tsan():
    with emulation.Emulator('tsan', harness=emulation.FUSED_HARNESS) as tsan:
        outcomes = fused_sweep.run_sweep(CI_CASES, tsan.launch_fused)
    assert_all_passed(outcomes, len(CI_CASES) * len(DTYPES) * len(fused_sweep.OPS))


def _rednet_like(**launch):
    geometry = sweep.Case(seed=7, batch=2, groups=2, group_channels=16, size=(9, 8),
                          kernel=(7, 7), stride=(1, 1), padding=(3, 3), dilation=(1, 1),
                          **launch)
    return fused_sweep.FusedCase(geometry, hidden=8, has_bias=True)


@pytest.mark.parametrize('case', [
    _rednet_like(),  # RedNet's layer: K=7, 16 channels a group, C/4 hidden
    _rednet_like(sm_count=10**6),  # the fewest channels a thread, many pixel slices
    _rednet_like(grid='fewer', grid_scale=0.0, threads=32),  # one warp walks all the work
], ids=['rednet', 'many-slices', 'one-warp'])
def test_fixed_cases_every_dtype(asan, case):
    outcomes = fused_sweep.run_sweep([case], asan.launch_fused)
    assert_all_passed(outcomes, len(DTYPES) * len(fused_sweep.OPS))


def test_comparison_catches_one_wrong_product(asan):
    """The bound is tight: an output off by one product of the sum fails in float."""
    case = _rednet_like()
    shapes = case.shapes()
    t, want, tolerance = fused_sweep.problem(case, torch.float32)
    launch = fused_planning.plan('forward', shapes, torch.float32, 132)
    got = asan.launch_fused(launch, fused_selfcheck.launch_tensors('forward', t, None)[:5],
                            fused_planning.result_shape('forward', shapes, 132), torch.float32)
    errors = sweep.bound.errors(got, want['forward'], tolerance['forward'])[0]
    assert errors.max() <= 1
    got[0, 0, 4, 4] += abs(want['forward'][0, 0, 4, 4].item()) / 49 + 1e-3
    assert sweep.bound.errors(got, want['forward'], tolerance['forward'])[0].max() > 1


# ---------------------------------------------------------------------------
# Planted faults
# ---------------------------------------------------------------------------
def _launch_one(emulator, op, case=None, dtype=torch.float32, tensors=None, **fault):
    case = case or _rednet_like()
    shapes = case.shapes()
    t, _, _ = fused_sweep.problem(case, dtype)
    launch = fused_planning.plan(op, shapes, dtype, case.case.sm_count)
    tensors = tensors or fused_selfcheck.launch_tensors(op, t, None)[:5]
    return emulator.launch_fused(launch, tensors,
                                 fused_planning.result_shape(op, shapes, case.case.sm_count),
                                 fused_planning.result_dtype(op, dtype), **fault)


READ_BUFFERS = [(op, name) for op in fused_planning.OPS
                for name, reads in zip(('input', 'hidden', 'span', 'bias', 'grad_output'),
                                       fused_planning.READS[op], strict=True) if reads]


@pytest.mark.parametrize('op,buffer', READ_BUFFERS, ids=[f'{o}-{b}' for o, b in READ_BUFFERS])
def test_asan_catches_a_read_one_past_each_buffer(op, buffer):
    with emulation.Emulator('asan', harness=emulation.FUSED_HARNESS) as emulator:
        with pytest.raises(emulation.EmulationError) as err:
            _launch_one(emulator, op, short=buffer)
    assert 'heap-buffer-overflow' in err.value.report and 'READ of size 4' in err.value.report


@pytest.mark.parametrize('op', fused_planning.OPS)
def test_asan_catches_a_write_one_past_the_result(op):
    with emulation.Emulator('asan', harness=emulation.FUSED_HARNESS) as emulator:
        with pytest.raises(emulation.EmulationError) as err:
            _launch_one(emulator, op, short='result')
    assert 'WRITE of size 4' in err.value.report and '0 bytes to the right of' in err.value.report


@pytest.mark.parametrize('op', fused_planning.OPS)
def test_tensors_an_entry_point_does_not_read_are_unread(asan, op):
    """The launcher passes null for them: the harness would crash on any read."""
    reads = fused_planning.READS[op]
    assert not all(reads)
    got = _launch_one(asan, op)  # None where not read: a null pointer
    assert not torch.isnan(got).any()


@pytest.mark.parametrize('op', fused_planning.OPS)
def test_tsan_catches_two_threads_writing_one_element(op):
    with emulation.Emulator('tsan', harness=emulation.FUSED_HARNESS) as emulator:
        with pytest.raises(emulation.EmulationError) as err:
            _launch_one(emulator, op, duplicate=True)
    assert 'WARNING: ThreadSanitizer: data race' in err.value.report
    assert 'involution_fused_cuda.cu' in err.value.report


# ---------------------------------------------------------------------------
# The backend, with the emulation as the GPU
# ---------------------------------------------------------------------------
@pytest.fixture
def kernels(cpu_launcher, asan, monkeypatch):
    """The launcher on the emulated fused kernels; ``kernels.plant(name, fault)`` edits the
    result of entry point ``name``; ``kernels.launched`` lists the launches."""
    class Kernels:
        def __init__(self):
            self.launched, self.faults, self.compile_error = [], {}, None

        def plant(self, name, fault):
            self.faults[name] = fault

    state = Kernels()
    one_at_a_time = threading.Lock()

    def load(name, dtype, device, source=cuda.SOURCE, params=cuda.PARAMS):
        assert source == cuda.FUSED_SOURCE
        if state.compile_error:
            raise state.compile_error
        launcher._functions[(name, device.index, params)] = None

    def launch(plan, tensors, source=cuda.SOURCE, params=cuda.PARAMS, threads=cuda.THREADS):
        *inputs, result = tensors
        state.launched.append(plan.kernel)
        with one_at_a_time:
            got = asan.launch_fused(plan, inputs, result.shape, result.dtype, threads)
        fault = state.faults.get(plan.kernel)
        result.copy_(fault(got) if fault else got)

    monkeypatch.setattr(launcher, 'load', load)
    monkeypatch.setattr(launcher, 'launch', launch)
    return state


GEOMETRY = ([7, 7], [1, 1], [3, 3], [1, 1])


def _layer_problem(dtype=torch.float32, bias=True):
    generator = torch.Generator().manual_seed(5)

    def draw(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

    x, h = draw(2, 32, 9, 8), draw(2, 8, 9, 8)
    w, b = draw(2 * 49, 8), draw(2 * 49) if bias else None
    return x, h, w, b, draw(2, 32, 9, 8)


def _calls(x, h, w, b, go):
    return {'forward': lambda: cuda.fused_forward(x, h, w, b, *GEOMETRY),
            'grad_input': lambda: cuda.fused_grad_input(go, x, h, w, b, *GEOMETRY),
            'grad_span': lambda: cuda.fused_grad_span(go, x, h, w, *GEOMETRY)}


def _composed(op, x, h, w, b, go):
    if op == 'forward':
        return portable.fused_forward(x, h, w, b, *GEOMETRY)
    if op == 'grad_input':
        return portable.fused_grad_input(go, x, h, w, b, *GEOMETRY)
    return portable.fused_grad_span(go, x, h, w, *GEOMETRY)


def _close(got, want, dtype):
    tol = {torch.float64: 1e-10, torch.float32: 1e-4}.get(dtype, 5e-2)
    for g, w in zip(got if isinstance(got, tuple) else (got, ),
                    want if isinstance(want, tuple) else (want, ), strict=True):
        torch.testing.assert_close(g.double(), w.double(), rtol=tol, atol=tol * 10)


ENTRIES = {'forward': ('forward_k7', ), 'grad_input': ('grad_input', ),
           'grad_span': ('grad_hidden', 'grad_span_weight')}


@pytest.mark.parametrize('dtype', DTYPES, ids=list(sweep.DTYPES))
def test_kernels_serve_the_three_ops_after_their_self_check(kernels, dtype):
    problem = _layer_problem(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for op, call in _calls(*problem).items():
            names = [f'involution_fused_{e}_{cuda.planning.TAGS[dtype]}' for e in ENTRIES[op]]
            first = call()
            assert kernels.launched[-2 * len(names):] == names + names  # probes, then the call
            for name in names:
                assert selfcheck._verdicts[(name, None)] is True
            before = len(kernels.launched)
            again = call()
            assert kernels.launched[before:] == names  # no second probe
            _close(again, first, dtype)
            _close(first, _composed(op, *problem), dtype)


@pytest.mark.parametrize('dtype', DTYPES, ids=list(sweep.DTYPES))
def test_every_entry_point_passes_its_own_probe(kernels, dtype):
    """Each probe plans to its entry point (forward_k3, forward_k7, forward_any, ...)."""
    for name in fused_planning.entry_points(dtype):
        op = next(op for op in fused_planning.OPS
                  if name.startswith(f'involution_fused_{op}'))
        assert fused_selfcheck.check(op, name, dtype, torch.device('cpu'), 132) is None
    assert kernels.launched == list(fused_planning.entry_points(dtype))


def test_source_text_inlines_includes_recursively(tmp_path):
    (tmp_path / 'a.cu').write_text('// a\n#include "b.cuh"\nint a;\n')
    (tmp_path / 'b.cuh').write_text('#include "c.cuh"\nint b;\n')
    (tmp_path / 'c.cuh').write_text('int c;\n')
    assert launcher.source_text(tmp_path / 'a.cu') == '// a\nint c;\n\nint b;\n\nint a;\n'


def test_results_and_gradients_match_the_reference(kernels):
    """The backend's forward and every gradient against the reference's autograd."""
    x, h, w, b, go = _layer_problem(torch.float64)
    x, h, w, b = (t.requires_grad_() for t in (x, h, w, b))
    out = fused_backend.forward(x.detach(), h.detach(), w.detach(), b.detach(), *GEOMETRY)
    ref = involution_fused_reference(x, h, w, 7, b, 1, 3, 1)
    _close(out, ref.detach(), torch.float64)
    grads = torch.autograd.grad(ref, (x, h, w, b), go)
    got_x = fused_backend.grad_input(go, x.detach(), h.detach(), w.detach(), b.detach(),
                                     *GEOMETRY)
    got_h, got_w, got_b = fused_backend.grad_span(go, x.detach(), h.detach(), w.detach(),
                                                  *GEOMETRY)
    for got, want in zip((got_x, got_h, got_w, got_b), grads, strict=True):
        _close(got, want, torch.float64)


def _one_off(got):
    got.view(-1)[got.numel() // 2] += 1.0
    return got


@pytest.mark.parametrize('entry,op', [('forward_k7', 'forward'), ('grad_input', 'grad_input'),
                                      ('grad_hidden', 'grad_span'),
                                      ('grad_span_weight', 'grad_span')])
def test_a_wrong_entry_point_gives_its_op_to_the_composition(kernels, entry, op):
    problem = _layer_problem()
    name = f'involution_fused_{entry}_f32'
    kernels.plant(name, _one_off)
    call = _calls(*problem)[op]
    with pytest.warns(RuntimeWarning) as caught:
        got = call()
    (message, ) = [str(c.message) for c in caught]
    assert name in message and 'tools/check_cuda.py' in message and 'fused probe' in message
    want = _composed(op, *problem)
    _close(got, want, torch.float32)
    assert selfcheck._verdicts[(name, None)] is False
    launched = len(kernels.launched)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _close(call(), want, torch.float32)
    assert kernels.launched[launched:] == []  # the composition from now on
    others = [o for o in ENTRIES if o != op]
    for other in others:  # the other ops keep their kernels
        _calls(*problem)[other]()
        assert kernels.launched[-1].startswith(f'involution_fused_{ENTRIES[other][-1]}')


def test_a_compile_failure_falls_back_with_one_warning(kernels):
    kernels.compile_error = RuntimeError('nvrtc: error: invalid value for --gpu-architecture')
    problem = _layer_problem()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        for _ in range(2):
            for op, call in _calls(*problem).items():
                _close(call(), _composed(op, *problem), torch.float32)
    messages = [str(c.message) for c in caught if issubclass(c.category, RuntimeWarning)]
    assert len(messages) == 1 and 'compiling the fused kernels failed' in messages[0]
    assert kernels.launched == []


def test_what_the_kernels_do_not_cover_takes_the_composition(kernels):
    x, h, w, b, go = _layer_problem()
    empty = x[:0], h[:0]
    assert cuda.fused_forward(*empty, w, b, *GEOMETRY).shape == (0, 32, 9, 8)
    ints = [t.to(torch.int32) for t in (x, h, w, b)]
    assert not fused_backend._use_kernels(ints[0], ints[1], [3, 3])
    assert kernels.launched == []
    cl = x.to(memory_format=torch.channels_last)
    _close(cuda.fused_forward(cl, h, w, b, *GEOMETRY), _composed('forward', x, h, w, b, go),
           torch.float32)
    assert kernels.launched  # channels-last is made contiguous, then the kernel runs


def test_the_fused_kernels_can_be_turned_off(kernels, monkeypatch):
    monkeypatch.setenv('MMREDNET_CUDA_FUSED', '0')
    problem = _layer_problem()
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a deliberate choice: no warning
        for op, call in _calls(*problem).items():
            _close(call(), _composed(op, *problem), torch.float32)
    assert kernels.launched == []


def test_in_a_graph_capture_only_entry_points_that_ran_before_launch(kernels, monkeypatch):
    """Compiling and the self-check cannot be captured: the first call in a capture takes
    the composition; after a call outside, the capture runs the kernel."""
    problem = _layer_problem()
    call = _calls(*problem)['forward']
    monkeypatch.setattr(fused_backend.backend, '_capturing', lambda: True)
    _close(call(), _composed('forward', *problem), torch.float32)
    assert kernels.launched == []
    monkeypatch.setattr(fused_backend.backend, '_capturing', lambda: False)
    call()
    monkeypatch.setattr(fused_backend.backend, '_capturing', lambda: True)
    launched = len(kernels.launched)
    _close(call(), _composed('forward', *problem), torch.float32)
    assert kernels.launched[launched:] == ['involution_fused_forward_k7_f32']


def test_without_bias(kernels):
    problem = _layer_problem(bias=False)
    for op, call in _calls(*problem).items():
        _close(call(), _composed(op, *problem), torch.float32)


# ---------------------------------------------------------------------------
# On a CUDA device
# ---------------------------------------------------------------------------
@pytest.fixture
def gpu():
    if cuda.unavailable_reason() is not None:
        pytest.skip(f'the CUDA kernels cannot run: {cuda.unavailable_reason()}')
    return torch.device('cuda')


@pytest.mark.gpu
def test_gpu_random_sweep(gpu):
    outcomes = fused_sweep.run_sweep(CI_CASES, fused_sweep.cuda_executor())
    assert_all_passed(outcomes, len(CI_CASES) * len(DTYPES) * len(fused_sweep.OPS))


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', DTYPES, ids=list(sweep.DTYPES))
def test_gpu_fused_op_and_gradients_match_the_composition(gpu, dtype):
    problem = [None if t is None else t.to(gpu) for t in _layer_problem(dtype)]
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the kernels pass their self-check: no fallback
        for op, call in _calls(*problem).items():
            _close(call(), _composed(op, *problem), dtype)
    for entry in fused_planning.entry_points(dtype):
        assert selfcheck.verdict(entry, gpu) is not False


@pytest.mark.gpu
def test_gpu_registered_op_autograd_and_gradcheck(gpu):
    x, h, w, b, _ = (t.to(gpu).requires_grad_() for t in _layer_problem(torch.float64))
    small = [t[:1, :16, :5, :4].detach().requires_grad_() for t in (x, )]
    assert torch.autograd.gradcheck(
        lambda x_, h_, w_, b_: involution_fused(x_, h_, w_, 7, b_, padding=3),
        (small[0], h[:1, :, :5, :4].detach().requires_grad_(),
         w[:49].detach().requires_grad_(), b[:49].detach().requires_grad_()))
    out = involution_fused(x, h, w, 7, b, padding=3)
    ref = involution_fused_reference(x, h, w, 7, b, 1, 3, 1)
    _close(out, ref, torch.float64)


@pytest.mark.gpu
def test_gpu_check_cuda_times_fused_against_composed(gpu):
    from mmrednet.testing.check_cuda import fused

    checks = fused.fused_timing(batch=1, repeat=3, dtypes=('fp32', ))
    assert len(checks) == 2 * len(fused.SHAPES)
    assert all(c.status == 'info' and c.data['ratio'] > 0 for c in checks)


@pytest.mark.gpu
def test_gpu_bad_input_is_a_clear_error(gpu):
    """The registered CUDA kernels sit behind the same checks as the CPU's."""
    x, h, w, b, go = (t.to(gpu) for t in _layer_problem())
    op = torch.ops.mmrednet.involution_fused
    with pytest.raises(ValueError, match='hidden channels 4 must equal'):
        op(x, h[:, :4], w, b, *GEOMETRY)
    with pytest.raises((ValueError, TypeError), match='bias'):
        op(x, h, w, b.double(), *GEOMETRY)
    with pytest.raises((ValueError, TypeError), match='bias'):
        op(x, h, w, b.cpu(), *GEOMETRY)
    with pytest.raises(ValueError, match='grad_output'):
        torch.ops.mmrednet.involution_fused_grad_input(go[:, :8], x, h, w, b, *GEOMETRY)
