"""The CUDA kernels run on the host (``kernels/emulation/``) in all dtypes, under sanitizers.

* The 16-bit conversions' host paths against torch, bit for bit: every 16-bit
  pattern to float, and every rounding case of float to 16 bit.
* A seeded random sweep (the first ``sweep.CI_CASES`` geometries of the full
  sweep that ``make cuda-emulation`` runs) against the unfold reference, values
  and both gradients, under AddressSanitizer + UndefinedBehaviorSanitizer
  (threads one after another, every tensor in an exact-size allocation) and
  under ThreadSanitizer (GPU threads concurrently on host threads).
* Planted faults, to show that each sanitizer sees what it must: a read and a
  write one element past a buffer, undefined behaviour, a data race.
"""
import numpy as np
import pytest
import torch

from mmrednet.ops import cuda
from mmrednet.testing import emulation, sweep

from .helpers import assert_all_passed

CI_CASES = sweep.random_cases(sweep.CI_CASES)
VARIANTS = {name.rsplit('_', 1)[0] for name in cuda.entry_points(torch.float32)}


@pytest.fixture(scope='module')
def asan():
    with emulation.Emulator('asan') as emulator:
        yield emulator


@pytest.fixture(scope='module')
def tsan():
    with emulation.Emulator('tsan') as emulator:
        yield emulator


# ---------------------------------------------------------------------------
# The random sweep
# ---------------------------------------------------------------------------
def test_ci_sweep_spans_the_geometry_space():
    """What the short sweep covers, so that a change of the generator cannot shrink it."""
    assert set(sweep.entry_points(CI_CASES)) == VARIANTS
    assert sweep.random_cases(sweep.CI_CASES + 5)[:sweep.CI_CASES] == CI_CASES  # a prefix
    assert {c.grid for c in CI_CASES} == {'plan', 'fewer', 'more'}
    assert any(len(c.size) == 1 for c in CI_CASES)  # 1-D problems
    assert {c.sm_count for c in CI_CASES} == {1, 8, 132, 10**6}
    axes = [(c.kernel[a], c.stride[a], c.dilation[a], c.padding[a])
            for c in CI_CASES for a in range(len(c.size))]
    kernels, strides, dilations, paddings = (set(v) for v in zip(*axes, strict=True))
    assert kernels == set(range(1, 10)) and strides == dilations == {1, 2, 3}
    assert any(p == k for k, _, _, p in axes) and 0 in paddings
    assert min(c.group_channels for c in CI_CASES) == 1
    assert max(c.group_channels for c in CI_CASES) >= 30
    assert {c.batch for c in CI_CASES} == {1, 2, 3}
    full = sweep.random_cases()
    assert len(full) >= 300 and len(set(full)) == len(full)


@pytest.mark.parametrize('part', range(4))
def test_random_sweep_under_asan_and_ubsan(asan, part):
    cases = CI_CASES[part::4]
    outcomes = sweep.run_sweep(cases, asan.launch)
    assert_all_passed(outcomes, len(cases) * len(sweep.DTYPES) * len(sweep.OPS))


def test_random_sweep_threaded_under_tsan(tsan):
    outcomes = sweep.run_sweep(CI_CASES, tsan.launch)
    assert_all_passed(outcomes, len(CI_CASES) * len(sweep.DTYPES) * len(sweep.OPS))


def _case(channels, groups, size, kernel, stride, padding, dilation, **launch):
    return sweep.Case(seed=sum(size) * 7 + channels, batch=2, groups=groups,
                      group_channels=channels // groups, size=size, kernel=kernel, stride=stride,
                      padding=padding, dilation=dilation, **launch)


FIXED = [
    # channels, groups, size, kernel, stride, padding, dilation: (h, w) pairs
    _case(32, 2, (9, 7), (3, 3), (1, 1), (1, 1), (1, 1)),  # k3s1, two chunks of 8 channels
    _case(24, 4, (9, 7), (3, 3), (2, 2), (1, 1), (1, 1)),  # k3s2, odd sizes
    _case(24, 2, (10, 9), (7, 7), (1, 1), (3, 3), (1, 1)),  # k7s1, 12 channels: a partial chunk
    _case(16, 1, (13, 11), (7, 7), (2, 2), (3, 3), (1, 1)),  # k7s2
    _case(8, 2, (11, 10), (7, 3), (1, 2), (3, 2), (1, 2)),  # k7s1 tile, strided dilated columns
    _case(6, 3, (12, 9), (3, 5), (2, 1), (1, 4), (1, 2)),  # k3s2 tile, odd channels a group
    _case(16, 4, (8, 11), (5, 5), (1, 1), (4, 4), (2, 2)),  # any: dilated rows
    _case(8, 8, (5, 6), (1, 1), (1, 1), (0, 0), (1, 1)),  # any: K=1, one channel a group
    _case(4, 2, (5, 6), (7, 7), (2, 2), (6, 6), (2, 2)),  # any: most taps outside
    _case(4, 1, (3, 4), (3, 3), (3, 3), (0, 2), (1, 1)),  # any: stride 3, no vertical padding
    _case(6, 2, (13, ), (5, ), (2, ), (2, ), (1, )),  # a 1-D problem
    # One block of one warp walks all the work (the grid-stride loop).
    _case(24, 2, (10, 9), (7, 7), (1, 1), (3, 3), (1, 1), grid='fewer', grid_scale=0.0,
          threads=32),
]


@pytest.mark.parametrize('sm_count', [1, 10**6])  # most channels a thread, and the fewest
def test_fixed_geometries_every_dtype(asan, sm_count):
    cases = [c if c.grid != 'plan' else sweep.Case(**{**c.__dict__, 'sm_count': sm_count})
             for c in FIXED]
    outcomes = sweep.run_sweep(cases, asan.launch)
    assert_all_passed(outcomes, len(cases) * len(sweep.DTYPES) * len(sweep.OPS))
    assert {o.blocks for o in outcomes if o.threads == 32} == {1}


def test_comparison_catches_one_wrong_tap(asan):
    """The tolerance is tight: a result off by its smallest single product fails in float."""
    case = FIXED[2]
    for dtype in (torch.float32, torch.float64):
        problem = sweep.problem(case, dtype)
        launch, threads = sweep.launch_for(problem, 'forward')
        got = asan.launch(launch, *problem.operands['forward'],
                          sweep.result_shape(problem, 'forward'), threads)
        assert sweep.compare(problem, 'forward', got, launch, threads).passed
        x, w = problem.operands['forward']
        got[0, 0, 4, 4] += (x[0, 0, 4, 4] * w[0, 0, 3, 3, 4, 4]).item()  # the centre tap twice
        assert not sweep.compare(problem, 'forward', got, launch, threads).passed
        got[0, 0, 4, 4] = float('nan')  # never written
        assert sweep.compare(problem, 'forward', got, launch, threads).unwritten == 1


# ---------------------------------------------------------------------------
# Planted faults: each sanitizer reports what it must
# ---------------------------------------------------------------------------
def _run(mode, case, op, dtype=torch.float32, **fault):
    problem = sweep.problem(case, dtype)
    launch, threads = sweep.launch_for(problem, op)
    with emulation.Emulator(mode) as emulator:
        return emulator.launch(launch, *problem.operands[op], sweep.result_shape(problem, op),
                               threads, **fault)


@pytest.mark.parametrize('case', [FIXED[2], FIXED[6]], ids=['tiled', 'any'])
@pytest.mark.parametrize('op', sweep.OPS)
def test_asan_catches_an_access_one_past_a_buffer(case, op):
    """The real entry points, with one buffer one element short."""
    with pytest.raises(emulation.EmulationError) as read:
        _run('asan', case, op, short='a')
    assert 'heap-buffer-overflow' in read.value.report
    assert 'READ of size 4' in read.value.report
    assert '0 bytes to the right of' in read.value.report
    with pytest.raises(emulation.EmulationError) as write:
        _run('asan', case, op, torch.float16, short='result')
    assert 'WRITE of size 2' in write.value.report
    assert '0 bytes to the right of' in write.value.report


def test_ubsan_catches_undefined_behaviour():
    """A launch with 0 channels a thread divides by zero in the kernel's index arithmetic."""
    problem = sweep.problem(FIXED[6], torch.float32)
    launch, threads = sweep.launch_for(problem, 'forward')
    launch = launch._replace(geometry=launch.geometry[:-1] + (0, ))
    with emulation.Emulator('asan') as emulator, pytest.raises(emulation.EmulationError) as err:
        emulator.launch(launch, *problem.operands['forward'],
                        sweep.result_shape(problem, 'forward'), threads)
    assert 'runtime error: division by zero' in err.value.report


@pytest.mark.parametrize('op', sweep.OPS)
def test_tsan_catches_two_threads_writing_one_element(op):
    """Every GPU thread run twice at once: each output written by two host threads."""
    with pytest.raises(emulation.EmulationError) as err:
        _run('tsan', FIXED[2], op, duplicate=True)
    assert 'WARNING: ThreadSanitizer: data race' in err.value.report
    assert 'involution_cuda.cu' in err.value.report  # in the kernel's store


def test_tsan_passes_make_every_pair_of_gpu_threads_concurrent():
    """Threads t and t + 16 share a host thread in the first pass, not in the second."""
    workers = emulation.TSAN_WORKERS
    x = torch.zeros(1)

    def race(modulus):
        launch = cuda.Launch('emulation_planted_race', 1, (modulus, ) + (0, ) * 15)
        with emulation.Emulator('tsan') as emulator:
            return emulator.launch(launch, x, x, (modulus, ), threads=16 * workers)

    assert race(16 * workers).tolist() == list(range(16 * workers))  # no collision: no report
    with pytest.raises(emulation.EmulationError) as err:
        race(workers)
    assert 'data race' in err.value.report


# ---------------------------------------------------------------------------
# The 16-bit conversions' host paths, bit for bit against torch
# ---------------------------------------------------------------------------
FORMATS = {torch.float16: ('f16_to_f32', 'f32_to_f16', 0x7bff, 2.0**16),
           torch.bfloat16: ('bf16_to_f32', 'f32_to_bf16', 0x7f7f, 2.0**128)}


def _to_float(bits, dtype):
    return torch.from_numpy(bits.view(np.int16)).view(dtype).float().numpy()


def _nan_payloads():
    """NaNs of both signs and kinds; some have payloads only in the bits a 16-bit
    format drops (a conversion that truncates them makes infinity)."""
    payloads = [1, 2, 0x1fff, 0x2000, 0x3fffff, 0x400000, 0x400001, 0x7fffff]
    payloads += [1 << k for k in range(23)]
    bits = np.array([0x7f800000 | p for p in payloads], dtype=np.uint32)
    return np.concatenate([bits, bits | 0x80000000]).view(np.float32)


def rounding_cases(dtype):
    """Float inputs that cover every rounding decision of float -> ``dtype``.

    Every 16-bit value; for each pair of neighbouring values (zero and the
    smallest subnormal, ..., the largest finite value and the overflow
    threshold) their exact midpoint (a tie: round to the even one, both
    parities occur) and the floats one ulp below and above it; both signs;
    float subnormals; overflow up to the largest float and infinity; NaN
    payloads; signed zeros.
    """
    _, _, largest, overflow = FORMATS[dtype]
    every = _to_float(np.arange(65536, dtype=np.uint16), dtype)
    ladder = np.append(_to_float(np.arange(largest + 1, dtype=np.uint16), dtype).astype(np.float64),
                       overflow)
    midpoints = ((ladder[:-1] + ladder[1:]) / 2).astype(np.float32)  # exact in float
    assert np.array_equal(midpoints.astype(np.float64), (ladder[:-1] + ladder[1:]) / 2)
    below = np.nextafter(midpoints, np.float32(0))
    above = np.nextafter(midpoints, np.float32(np.inf))
    rng = np.random.default_rng(0)
    float_subnormals = np.concatenate([
        np.array([1, 2, 3, 0x7fffff, 0x400000], dtype=np.uint32),
        rng.integers(1, 0x800000, 2000, dtype=np.uint32)]).view(np.float32)
    huge = np.array([2.0**k for k in range(15, 128)] + [np.finfo(np.float32).max, np.inf],
                    dtype=np.float32)
    positive = np.concatenate([midpoints, below, above, float_subnormals, huge])
    return np.concatenate([every, positive, -positive, _nan_payloads(),
                           np.array([0.0, -0.0], dtype=np.float32)])


@pytest.mark.parametrize('dtype', FORMATS, ids=['half', 'bfloat16'])
def test_16_bit_to_float_matches_torch_for_every_pattern(asan, dtype):
    bits = np.arange(65536, dtype=np.uint16)
    ours = asan.convert(FORMATS[dtype][0], bits)
    theirs = _to_float(bits, dtype)
    nan = np.isnan(theirs)
    assert nan.sum() == 2 * (2**(10 if dtype == torch.float16 else 7) - 1)
    assert np.array_equal(ours[~nan].view(np.uint32), theirs[~nan].view(np.uint32))
    assert np.isnan(ours[nan]).all()


@pytest.mark.parametrize('dtype', FORMATS, ids=['half', 'bfloat16'])
def test_float_to_16_bit_rounds_like_torch(asan, dtype):
    values = rounding_cases(dtype)
    ours = asan.convert(FORMATS[dtype][1], values)
    theirs = torch.from_numpy(values).to(dtype).view(torch.int16).numpy().view(np.uint16)
    nan = np.isnan(values)
    mismatch = np.flatnonzero((ours != theirs) & ~nan)
    assert mismatch.size == 0, [(hex(values[i:i + 1].view(np.uint32)[0]), hex(ours[i]),
                                 hex(theirs[i])) for i in mismatch[:10]]
    # NaN stays NaN (payloads are implementation-defined: torch's own CPU paths differ).
    assert np.isnan(_to_float(ours[nan], dtype)).all()
    # The set holds both kinds of ties, and overflow to infinity.
    as_float = _to_float(ours, dtype)
    assert np.isinf(as_float).sum() > 4 and (as_float == 0).sum() > 4


def test_without_the_harness_it_says_a_source_checkout_is_needed(tmp_path, monkeypatch):
    """The harness is CI's, not necessarily the wheel's: its absence is a clear error."""
    monkeypatch.setattr(emulation, 'HARNESS', tmp_path / 'harness.cpp')
    monkeypatch.setenv('MMREDNET_EMULATION_CACHE', str(tmp_path / 'cache'))
    for build in (emulation.build, emulation.build_conversion_check):
        with pytest.raises(emulation.EmulationError, match='only a source checkout'):
            build()
    assert not (tmp_path / 'cache').exists()  # nothing built or half-built
