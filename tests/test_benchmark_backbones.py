"""The model and layout sections of tools/benchmark_involution.py (``mmrednet.benchmarks``
``backbones`` and ``layout``) on tiny backbones: rows, profile counts, tables and files."""
import csv

import pytest
import torch
from rich.console import Console
from torch import nn

from mmrednet.benchmarks import backbones, layout, op_report
from mmrednet.models import RedNet

from .tools import run_tool


def _tiny_models():
    from mmdet.models.backbones import ResNet
    tiny = dict(depth=26, base_channels=16, stem_channels=32, norm_eval=False,
                channels_last=True)
    return {backbones.REDNET: RedNet(**tiny),
            backbones.RESNET: ResNet(18, base_channels=16, norm_eval=False),
            backbones.RESNET_CL: ResNet(18, base_channels=16, norm_eval=False).to(
                memory_format=torch.channels_last),
            backbones.REDNET_CL_OUT: RedNet(**tiny, channels_last_outputs=True)}


def test_layout_section_counts_the_conversions_and_convolutions():
    models = _tiny_models()
    rows = {(r.model, r.mode): r for r in layout.benchmark_layout(models, '1x64x64',
                                                                  '2x64x64')}
    assert len(rows) == 2 * len(models)
    # RedNet: the image once (again when backward recomputes the stem), each of the four
    # returned maps once each way unless they are returned channels-last.
    assert rows[(backbones.REDNET, 'inference')].conversions == 5
    assert rows[(backbones.REDNET, 'train step')].conversions == 10
    assert rows[(backbones.REDNET_CL_OUT, 'inference')].conversions == 1
    assert rows[(backbones.REDNET_CL_OUT, 'train step')].conversions == 2
    assert all(rows[(backbones.RESNET, mode)].conversions == 0
               for mode in ('inference', 'train step'))
    rednet = rows[(backbones.REDNET, 'inference')]
    assert rednet.input == '1x3x64x64' and rows[(backbones.REDNET, 'train step')].input == \
        '2x3x64x64'
    assert rednet.copies >= 5 and rednet.copied_melems > 0
    assert rows[(backbones.REDNET_CL_OUT, 'inference')].copied_melems < rednet.copied_melems
    # Every forward convolution is counted on one path or the other.
    for name in (backbones.REDNET, backbones.RESNET):
        row = rows[(name, 'inference')]
        assert row.onednn_convs + row.slow_convs == _conv_calls(models[name], 1, 64) >= 20


def _conv_calls(model: nn.Module, batch: int, size: int) -> int:
    """How many ``nn.Conv2d`` modules one inference forward of ``model`` calls."""
    calls = []
    handles = [m.register_forward_hook(lambda *args: calls.append(1))
               for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.randn(batch, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return len(calls)


def test_model_section_rows_tables_and_files(tmp_path):
    models = _tiny_models()
    model_rows = backbones.benchmark_models(['1x48x48'], ['2x48x48'], models, 'cpu', 3)
    assert [(r.input, r.mode) for r in model_rows] == [('1x3x48x48', 'inference'),
                                                       ('2x3x48x48', 'train step')]
    assert [r.target for r in model_rows] == [0.8, 0.9]
    assert all(r.rednet_ms > 0 and r.ratio > 0 and r.cl_out_vs_nchw_out > 0
               for r in model_rows)
    layout_rows = layout.benchmark_layout(models, '1x48x48', '2x48x48')
    console = Console(record=True, width=250)
    op_report.print_cpu(console, [], [], model_rows, layout_rows)
    text = console.export_text()
    assert 'CL / NCHW outputs' in text and 'layout conversions' in text
    op_report.write_cpu(str(tmp_path), [], [], model_rows, layout_rows)
    with open(tmp_path / 'model.csv') as f:
        assert [r['mode'] for r in csv.DictReader(f)] == ['inference', 'train step']
    with open(tmp_path / 'layout.csv') as f:
        written = list(csv.DictReader(f))
    assert [int(r['conversions']) for r in written] == [r.conversions for r in layout_rows]
    assert (tmp_path / 'benchmark.png').stat().st_size > 0


@pytest.mark.parametrize('option,value', [('--model-inputs', '2x320'),
                                          ('--train-inputs', '0x64x64')])
def test_tool_rejects_malformed_inputs(capsys, option, value):
    assert run_tool('benchmark_involution.py', option, value) == 2
    err = capsys.readouterr().err
    assert '--model-inputs/--train-inputs' in err and repr(value) in err
