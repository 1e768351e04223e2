"""The traffic model of the CUDA launch plan counts exactly the loads the kernels make."""
import pytest
import torch
from rich.console import Console

from mmrednet.benchmarks import traffic
from mmrednet.ops import cuda
from mmrednet.testing import emulation, sweep

# What the kernels' operands a and b are, per op.
OPERANDS = {'forward': ('input', 'weight'), 'grad_input': ('grad_output', 'weight'),
            'grad_weight': ('grad_output', 'input')}


@pytest.mark.parametrize('params', [cuda.PARAMS, cuda.LaunchParams(rows=3, channels=4)],
                         ids=['default', 'rows3-channels4'])
def test_model_counts_the_loads_of_the_emulated_kernels(params):
    """Every CI sweep geometry, every op: the model's loads equal the loads the
    kernels make when the emulation runs them (counted by the harness)."""
    with emulation.Emulator('asan', params) as emulator:
        for case in sweep.random_cases(sweep.CI_CASES):
            problem = sweep.problem(case, torch.float32)
            for op in sweep.OPS:
                launch, threads = sweep.launch_for(problem, op, params)
                emulator.launch(launch, *problem.operands[op], sweep.result_shape(problem, op),
                                threads)
                model = traffic.traffic(op, *problem.shapes, torch.float32, case.sm_count,
                                        params)
                assert emulator.loads == tuple(model.loads[k] for k in OPERANDS[op]), (
                    case.describe(), op)
                assert model.kernel == launch.kernel


def test_rednet50_stages():
    rows = traffic.rednet50_stages(batch=32, dtype=torch.float16)
    assert [r.shape for r in rows[::3]] == ['32x64x56x56', '32x128x28x28', '32x256x14x14',
                                            '32x512x7x7']
    first = rows[0]
    x = 32 * 64 * 56 * 56 * 2
    w = 32 * 4 * 49 * 56 * 56 * 2
    assert first.minimal_mb * 1e6 == pytest.approx(2 * x + w)  # x and w in, out written
    assert first.times_us['H100 SXM'] == pytest.approx((2 * x + w) / 3.35e12 * 1e6)
    assert first.times_us['H200'] < first.times_us['H100 SXM']
    for row in rows:
        assert row.kernel.endswith('_k7s1_f16')  # the register-tiled kernels
        assert row.requested_mb > row.minimal_mb  # re-reads that L1/L2 must serve
    # Eight channels a thread share each kernel value: the 16-channel groups read w twice
    # (less the taps outside the input, which the kernels skip).
    t = traffic.traffic('forward', (32, 64, 56, 56), (32, 4, 7, 7, 56, 56), (1, 1), (3, 3),
                        (1, 1), torch.float16, 132)
    w_elements = w // 2
    assert 1.8 * w_elements < t.loads['weight'] < 2 * w_elements


def test_model_tables():
    console = Console(record=True, width=250)
    traffic.print_tables(console, 32)
    text = console.export_text()
    assert 'CUDA traffic model, fp16' in text and 'CUDA traffic model, fp32' in text
    assert '32x64x56x56' in text and 'grad_weight_k7s1_f16' in text and 'H200 floor us' in text
