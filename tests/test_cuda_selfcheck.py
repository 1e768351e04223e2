"""The launcher's first-use self-check, on the CPU: the host emulation is the GPU.

``cpu_launcher`` (conftest) runs ``mmrednet.ops.cuda`` on CPU tensors; its
``launcher.launch`` runs the emulated kernels (the kernel source compiled for the host),
as they are or with a planted fault, so the whole path the GPU takes runs:
plan, self-check on the probe, launch or fall back.
"""
import threading
import warnings

import pytest
import torch

from mmrednet.benchmarks import traffic
from mmrednet.ops import cuda, portable
from mmrednet.ops.cuda import bound, launcher, selfcheck
from mmrednet.testing import emulation, sweep

from .helpers import random_problem

GEOMETRY = ([1, 1], [3, 3], [1, 1])


@pytest.fixture(scope='module')
def emulator():
    with emulation.Emulator('asan') as emulator:
        yield emulator


@pytest.fixture
def kernels(cpu_launcher, emulator, monkeypatch):
    """The launcher on the emulated kernels; ``kernels.plant(name, fault)`` makes entry point
    ``name`` wrong (``fault`` edits its result); ``kernels.launched`` lists every launch,
    ``kernels.loaded`` every entry point compiled and loaded."""
    class Kernels:
        def __init__(self):
            self.launched, self.loaded, self.faults = [], [], {}

        def plant(self, name, fault):
            self.faults[name] = fault

    state = Kernels()
    one_at_a_time = threading.Lock()  # one request at a time on the emulator's pipe

    def load(name, dtype, device, source=cuda.SOURCE, params=cuda.PARAMS):
        state.loaded.append(name)  # compiled "by CuPy"
        launcher._functions[(name, device.index, params)] = None

    def launch(launch, tensors, source=cuda.SOURCE, params=cuda.PARAMS, threads=cuda.THREADS):
        a, b, result = tensors
        state.launched.append(launch.kernel)
        with one_at_a_time:
            got = emulator.launch(launch, a, b, result.shape, threads)
        fault = state.faults.get(launch.kernel)
        result.copy_(fault(got) if fault else got)

    monkeypatch.setattr(launcher, 'load', load)
    monkeypatch.setattr(launcher, 'launch', launch)
    return state


def _one_off(got):
    got.view(-1)[got.numel() // 2] += 1.0  # one element off by one
    return got


def _problem(dtype=torch.float32):
    x, w, _ = random_problem(n=2, c=16, groups=2, size=(12, 10), kernel=7, dtype=dtype,
                             requires_grad=False)
    grad_out = torch.randn(x.shape, dtype=dtype)
    return x, w, grad_out


def _calls(x, w, grad_out):
    return {'forward': lambda: cuda.forward(x, w, *GEOMETRY),
            'grad_input': lambda: cuda.grad_input(grad_out, x, w, *GEOMETRY),
            'grad_weight': lambda: cuda.grad_weight(grad_out, x, w, *GEOMETRY)}


def _portable(op, x, w, grad_out):
    if op == 'forward':
        return portable.forward(x, w, *GEOMETRY)
    return getattr(portable, op)(grad_out, x, w, *GEOMETRY)


@pytest.mark.parametrize('op', cuda.OPS)
def test_a_wrong_kernel_is_replaced_by_the_portable_path_with_one_warning(kernels, op):
    x, w, grad_out = _problem()
    name = f'involution_{op}_k7s1_f32'
    kernels.plant(name, _one_off)
    call = _calls(x, w, grad_out)[op]
    with pytest.warns(RuntimeWarning) as caught:
        got = call()
    assert len(caught) == 1
    message = str(caught[0].message)
    assert 'tools/check_cuda.py' in message and name in message
    probe = selfcheck.probe(name)
    assert f'probe input {probe.input_shape}' in message
    assert 'times the bound' in message and 'max error 1 ' in message  # what differed
    assert torch.equal(got, _portable(op, x, w, grad_out))  # never the wrong result
    assert kernels.launched == [name]  # the probe only
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no second warning
        assert torch.equal(call(), _portable(op, x, w, grad_out))
    assert kernels.launched == [name]  # from now on the portable path, unchecked
    assert selfcheck._verdicts == {(name, None): False}


@pytest.mark.parametrize('dtype', list(sweep.DTYPES.values()), ids=list(sweep.DTYPES))
def test_correct_kernels_pass_and_are_kept(kernels, dtype):
    """Every op in every dtype: one probe launch, then the kernel serves every call."""
    x, w, grad_out = _problem(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        for op, call in _calls(x, w, grad_out).items():
            name = cuda.plan(op, x.shape, w.shape, *GEOMETRY, dtype, 132).kernel
            for _ in range(2):
                got = call()
            assert kernels.launched[-3:] == [name] * 3  # probe, then both calls
            assert selfcheck._verdicts[(name, None)] is True
            want = _portable(op, *(t.double() for t in (x, w, grad_out)))
            torch.testing.assert_close(got.double(), want, rtol=0,
                                       atol=0.05 * want.abs().max().item())


def test_each_variant_is_checked_once_on_its_own_probe(kernels):
    """Entry points are checked one by one: a wrong stride-2 kernel does not condemn the
    stride-1 one, and its probe plans to the stride-2 kernel itself."""
    x, w, grad_out = _problem()
    kernels.plant('involution_forward_k3s2_f32', _one_off)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cuda.forward(x, w, *GEOMETRY)  # k7s1 passes
    x2, w2, _ = random_problem(n=2, c=16, groups=2, size=(12, 10), kernel=3, stride=2,
                               dtype=torch.float32, requires_grad=False)
    with pytest.warns(RuntimeWarning, match='involution_forward_k3s2_f32'):
        got = cuda.forward(x2, w2, [2, 2], [1, 1], [1, 1])
    assert torch.equal(got, portable.forward(x2, w2, [2, 2], [1, 1], [1, 1]))
    assert kernels.launched == ['involution_forward_k7s1_f32'] * 2 + [
        'involution_forward_k3s2_f32']
    assert selfcheck._verdicts == {('involution_forward_k7s1_f32', None): True,
                              ('involution_forward_k3s2_f32', None): False}


def test_unwritten_elements_and_failed_launches_fail(kernels, monkeypatch):
    x, w, grad_out = _problem(torch.float16)

    def unwritten(got):
        got.view(-1)[-1] = float('nan')  # as if no thread wrote it (results start as NaN)
        return got

    kernels.plant('involution_grad_weight_k7s1_f16', unwritten)
    with pytest.warns(RuntimeWarning, match='1 of 8820 elements not written'):
        cuda.grad_weight(grad_out, x, w, *GEOMETRY)

    def refused(*args, **kwargs):
        raise RuntimeError('CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES')

    monkeypatch.setattr(launcher, 'launch', refused)
    with pytest.warns(RuntimeWarning, match='the launch failed.*OUT_OF_RESOURCES'):
        got = cuda.forward(x, w, *GEOMETRY)
    assert torch.equal(got, portable.forward(x, w, *GEOMETRY))


def test_a_first_call_during_graph_capture_is_portable_and_checks_later(kernels, monkeypatch):
    x, w, grad_out = _problem()
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)  # as in any capture
    monkeypatch.setattr(torch.cuda, 'is_current_stream_capturing', lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        got = cuda.forward(x, w, *GEOMETRY)
    assert kernels.launched == [] and selfcheck._verdicts == {}  # no probe, no verdict
    assert torch.equal(got, portable.forward(x, w, *GEOMETRY))
    monkeypatch.setattr(torch.cuda, 'is_current_stream_capturing', lambda: False)
    cuda.forward(x, w, *GEOMETRY)
    assert selfcheck._verdicts == {('involution_forward_k7s1_f32', None): True}


def test_a_first_call_during_graph_capture_compiles_and_loads_nothing(kernels, monkeypatch):
    """Compiling and loading the module wait for a call outside the capture, as the check does;
    once the entry point has run outside, a call in a capture runs it."""
    x, w, grad_out = _problem()
    name = 'involution_forward_k7s1_f32'
    capturing = [True]
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)  # as in any capture
    monkeypatch.setattr(torch.cuda, 'is_current_stream_capturing', lambda: capturing[0])
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        got = cuda.forward(x, w, *GEOMETRY)
    assert kernels.loaded == [] and kernels.launched == []  # nothing compiled, loaded, run
    assert torch.equal(got, portable.forward(x, w, *GEOMETRY))
    capturing[0] = False
    cuda.forward(x, w, *GEOMETRY)  # outside: compiled and loaded, checked, run
    assert kernels.loaded == [name] and kernels.launched == [name] * 2
    capturing[0] = True
    cuda.forward(x, w, *GEOMETRY)
    assert kernels.launched == [name] * 3  # captured: the kernel, no second check


def test_a_check_that_raises_falls_back_with_one_warning(kernels, monkeypatch):
    """A check that cannot run (its probe out of memory, say) condemns the entry point: the
    portable path from then on, after one warning, never the error."""
    x, w, grad_out = _problem()
    name = 'involution_forward_k7s1_f32'

    def out_of_memory(*args):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 MiB')

    monkeypatch.setattr(bound, 'bound', out_of_memory)
    with pytest.warns(RuntimeWarning) as caught:
        got = cuda.forward(x, w, *GEOMETRY)
    (message, ) = [str(c.message) for c in caught]
    assert name in message and 'could not be checked' in message
    assert 'OutOfMemoryError: CUDA out of memory' in message
    assert torch.equal(got, portable.forward(x, w, *GEOMETRY))
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no second warning, no error
        assert torch.equal(cuda.forward(x, w, *GEOMETRY), portable.forward(x, w, *GEOMETRY))
    assert kernels.launched == [name]  # the probe only
    assert selfcheck._verdicts == {(name, None): False}


def test_threads_making_their_first_call_at_once_share_one_check(kernels, monkeypatch):
    """Two threads' first calls of one entry point: one check, then both run the kernel."""
    x, w, grad_out = _problem()
    name = 'involution_forward_k7s1_f32'
    second_arrived = threading.Event()
    checks, arrivals = [], []

    class ArrivalsLock:
        """The check's lock, telling when a second thread arrives at it."""

        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            arrivals.append(threading.current_thread().name)
            if len(arrivals) == 2:
                second_arrived.set()
            return self.lock.__enter__()

        def __exit__(self, *exc):
            return self.lock.__exit__(*exc)

    def check(*args, **kwargs):
        checks.append(threading.current_thread().name)
        if len(checks) == 1:  # the first check runs on while a second thread arrives
            first_checking.set()
            second_arrived.wait(timeout=30)
        else:
            second_arrived.set()
        return original(*args, **kwargs)

    original, first_checking = selfcheck.check, threading.Event()
    monkeypatch.setattr(selfcheck, 'check', check)
    monkeypatch.setattr(selfcheck, '_lock', ArrivalsLock(selfcheck._lock))
    results, errors = {}, []

    def first_call(label):
        try:
            results[label] = cuda.forward(x, w, *GEOMETRY)
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        one = threading.Thread(target=first_call, args=('one', ))
        one.start()
        assert first_checking.wait(timeout=30)
        two = threading.Thread(target=first_call, args=('two', ))
        two.start()
        one.join()
        two.join()
    assert not errors
    assert len(checks) == 1
    assert selfcheck._verdicts == {(name, None): True}
    assert kernels.launched == [name] * 3  # one probe, then each thread's call
    assert torch.equal(results['one'], results['two'])


def test_selfcheck_off_runs_the_kernel_unchecked(kernels, monkeypatch):
    monkeypatch.setenv('MMREDNET_CUDA_SELFCHECK', '0')
    x, w, grad_out = _problem()
    kernels.plant('involution_forward_k7s1_f32', _one_off)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        got = cuda.forward(x, w, *GEOMETRY)
    assert kernels.launched == ['involution_forward_k7s1_f32']  # no probe
    assert not torch.equal(got, portable.forward(x, w, *GEOMETRY))  # the planted fault
    assert selfcheck._verdicts == {}


def test_every_entry_point_has_a_probe_that_plans_to_it():
    """A probe is small, has every boundary (padding), a remainder strip and a remainder
    chunk of channels, and its traffic is what selfcheck's docstring states."""
    sizes = []
    for dtype in sweep.DTYPES.values():
        for name in cuda.entry_points(dtype):
            op = selfcheck.op_of(name)
            probe = selfcheck.probe(name)
            launch = cuda.plan(op, *probe, dtype, 132)
            assert launch.kernel == name
            assert probe.weight_shape[4] % cuda.PARAMS.rows == 1  # a one-row last strip
            assert min(probe.padding) > 0
            if op != 'grad_weight':
                assert selfcheck.GROUP_CHANNELS % launch.geometry[-1] != 0
            sizes.append(traffic.selfcheck_traffic(name).minimal)
    assert (min(sizes), max(sizes)) == (6840, 102240)  # the docstring's 6.8-102 kB


def test_the_check_uses_the_sweeps_bound(kernels, monkeypatch):
    """The check's bound is sweep's: scaled down, it fails the same correct kernel."""
    x, w, grad_out = _problem(torch.bfloat16)
    original, factor = bound.bound, [1.0]
    monkeypatch.setattr(bound, 'bound', lambda *args: original(*args) * factor[0])
    problem = sweep.problem(sweep.random_cases(1)[0], torch.bfloat16)
    factor[0] = 0.5  # the sweep's tolerance is the same function
    assert torch.equal(sweep.tolerance(problem, 'forward') * 2,
                       original(torch.bfloat16, bound.terms('forward', problem.case.kernel,
                                                            problem.case.group_channels),
                                problem.magnitude['forward']))
    factor[0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cuda.forward(x, w, *GEOMETRY)  # the emulated kernel is within sweep's bound
    selfcheck._verdicts.clear()
    factor[0] = 1e-9  # a bound no bfloat16 result meets
    with pytest.warns(RuntimeWarning, match='times the bound'):
        cuda.forward(x, w, *GEOMETRY)
