"""The deploy benchmark (mmrednet.benchmarks.deploy, tools/benchmark_deploy.py) runs end to
end (its op section: ONNX forms against eager); its model sections' pieces: the composed
package beside a fused one, and the paired ratios with their targets."""
import torch
from rich.console import Console
from torch import nn

from mmrednet.benchmarks import deploy
from mmrednet.benchmarks.deploy import Case, Options, run

from .test_onnx_op import FusedInvolution


def test_op_section_times_checks_and_writes(tmp_path):
    rows, ratios = run(Options(sections=['op'], rounds=1, out_dir=str(tmp_path)))
    backends = {'onnxruntime slice per tap', 'onnxruntime pad + gather', 'pytorch eager'}
    assert {r.backend for r in rows} == backends and len(rows) == 4 * len(backends)
    assert all(r.median_ms > 0 and r.max_abs_diff < 1e-4 for r in rows)  # checked vs eager
    assert ratios == []  # the RedNet/ResNet ratios belong to the model sections
    assert sorted(p.name for p in tmp_path.iterdir()) == ['deploy_benchmark.csv',
                                                          'deploy_benchmark.png']


def test_a_fused_package_is_timed_beside_its_composition(tmp_path):
    """The composed package calls the involution op on a written kernel, the other the
    fused op; both are checked against eager. A package without the fused op gets none."""
    fused = nn.Sequential(FusedInvolution(stride=1), FusedInvolution(stride=2, bias=False)).eval()
    x = torch.randn(1, 16, 13, 10)
    cases = deploy._aoti_cases('s', 'RedNet', fused, x, str(tmp_path), None, composed=True)
    assert [c.backend for c in cases] == [deploy.PT2, deploy.PT2_COMPOSED]
    ops = [deploy.PackageInfo.read(str(tmp_path / f's_RedNet{suffix}.pt2')).ops
           for suffix in ('', '_composed')]
    assert ops == [['mmrednet::involution_fused'], ['mmrednet::involution']]
    assert all(c.diff < 1e-5 for c in cases)
    conv = nn.Conv2d(16, 16, 3, padding=1).eval()
    assert len(deploy._aoti_cases('s', 'ResNet', conv, x, str(tmp_path), None, True)) == 1


def _case(section, name, backend, times):
    case = Case(section, name, backend, lambda: None)
    case.times = times
    return case


def test_paired_ratios_have_the_targets_of_their_section(tmp_path):
    """Medians of per-round ratios; each section its own target; a backend only one model
    has (the composed package) gives its ratio and leaves the tables' other cells empty."""
    cases = []
    for section in ('classifier', 'retinanet'):
        cases += [_case(section, 'RedNet-50', deploy.PT2, [1.0, 2.0, 3.0]),
                  _case(section, 'RedNet-50', deploy.PT2_COMPOSED, [2.0, 2.0, 2.0]),
                  _case(section, 'ResNet-50', deploy.PT2, [4.0, 1.0, 3.0]),
                  _case(section, 'ResNet-50', deploy.ORT, [2.0, 2.0, 2.0])]
    ratios = {(r.section, r.ratio): r for r in deploy.paired_ratios(cases)}
    assert set(ratios) == {(s, label) for s in ('classifier', 'retinanet') for label in (
        'RedNet-50 .pt2 / ResNet-50 .pt2', 'RedNet-50 .pt2 / ResNet-50 onnxruntime',
        'RedNet-50 .pt2 fused / composed')}
    pair = ratios['classifier', 'RedNet-50 .pt2 / ResNet-50 .pt2']
    assert (pair.median, pair.min, pair.max) == (1.0, 0.25, 2.0)  # of 0.25, 2, 1
    assert pair.target == '<= 0.8'
    assert ratios['retinanet', 'RedNet-50 .pt2 / ResNet-50 .pt2'].target == '<= 1.0'
    assert ratios['classifier', 'RedNet-50 .pt2 / ResNet-50 onnxruntime'].target == '< 1.0'
    assert ratios['retinanet', 'RedNet-50 .pt2 / ResNet-50 onnxruntime'].target == ''
    assert ratios['classifier', 'RedNet-50 .pt2 fused / composed'].median == 1.0
    rows = deploy.rows_of(cases)
    console = Console(record=True, width=200)
    deploy.print_rows(console, rows, 2)
    resnet_rows = [line.split('│') for line in console.export_text().splitlines()
                   if 'ResNet-50' in line]
    # ResNet-50 has no composed package: its cell is '-'.
    assert resnet_rows and all('-' in [cell.strip() for cell in row] for row in resnet_rows)
    assert 'deploy_benchmark.png' in deploy.write(str(tmp_path), rows,
                                                  list(ratios.values()))
