"""tools/benchmark_fused.py (``mmrednet.benchmarks.fused``) on a tiny input: the shapes,
the rows, the files and the argument checks."""
import csv

import pytest

from mmrednet.benchmarks.fused import Shape, rednet50_shapes
from mmrednet.ops import cpu

from .tools import run_tool


def test_rednet50_shapes_follow_the_stages():
    shapes = rednet50_shapes(1, [(800, 1344)], strided=False)
    assert [(s.channels, s.height, s.width, s.stride) for s in shapes] == [
        (64, 200, 336, 1), (128, 100, 168, 1), (256, 50, 84, 1), (512, 25, 42, 1)]
    # Odd sizes round up, as the stem and the strided blocks do; the strided
    # involution of a stage runs at the previous stage's size.
    strided = rednet50_shapes(2, [(224, 224)], strided=True)
    assert [(s.channels, s.height, s.stride) for s in strided] == [
        (64, 56, 1), (128, 56, 2), (128, 28, 1), (256, 28, 2), (256, 14, 1), (512, 14, 2),
        (512, 7, 1)]
    assert strided[1].name == '128x56x56/s2' and strided[1].input == '2x224x224'
    assert Shape('1x8x8', 64, 3, 5).name == '64x3x5'


@pytest.mark.skipif(not cpu.AVAILABLE, reason='the compiled op library is not built')
def test_tool_writes_a_row_per_shape_layout_and_pass(tmp_path, capsys):
    code = run_tool('benchmark_fused.py', '--threads', 1, '--sizes', '40x36', '--channels', 64,
                    128, '--rounds', 1, '--breakdown', '--out-dir', tmp_path)
    assert code == 0
    with open(tmp_path / 'fused.csv') as f:
        rows = list(csv.DictReader(f))
    keys = [(r['shape'], r['layout'], r['pass_']) for r in rows]
    assert keys == [(shape, layout, pass_) for shape in ('64x10x9', '128x5x5')
                    for layout in ('channels_last', 'contiguous')
                    for pass_ in ('forward', 'backward')]
    assert all(float(r[k]) > 0 for r in rows for k in ('composed_ms', 'fused_ms', 'ratio'))
    # The breakdown names every part it timed.
    assert all(part in rows[0]['parts'] for part in ('span conv', 'op grad_weight',
                                                     'fused grad_span', 'span GEMM'))
    assert (tmp_path / 'fused.png').stat().st_size > 0
    assert 'fused involution vs span conv' in capsys.readouterr().out


@pytest.mark.parametrize('argv, message', [
    (['--sizes', '224'], 'expected HxW'),
    (['--sizes', '0x5'], 'sizes must be >= 1'),
    (['--rounds', '0'], '--rounds must be >= 1'),
    (['--channels', '96'], 'invalid choice'),
])
def test_tool_rejects_bad_arguments(argv, message, capsys):
    assert run_tool('benchmark_fused.py', *argv) == 2
    assert message in capsys.readouterr().err
