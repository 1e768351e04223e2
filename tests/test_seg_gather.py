"""tools/analysis/gather_seg_results.py on work dirs laid out as mmengine writes them."""
import json
import os

from .seg_helpers import ROOT
from .tools import run_tool

TABLE = """per class results:

+---------------+-------+-------+
|     Class     |  IoU  |  Acc  |
+---------------+-------+-------+
|      road     | 97.51 | 98.9  |
|      wall     |  nan  |  nan  |
| traffic light | 60.25 | 70.0  |
+---------------+-------+-------+
11/21 17:04:12 - mmengine - INFO - Iter(val) [500/500]    aAcc: 95.0  mIoU: {miou}
"""


def write_run(work_dir, ts, *, val=None, test=None, tta=False):
    run = work_dir / ts
    (run / 'vis_data').mkdir(parents=True)
    # The config as the Runner logs it: every mmseg config has a tta_model;
    # only --tta makes it the model.
    if tta:
        model = ("model = dict(\n    module=dict(\n        backbone=dict(depth=50),\n"
                 "        type='EncoderDecoder'),\n    type='SegTTAModel')\n")
    else:
        model = "model = dict(\n    backbone=dict(depth=50),\n    type='EncoderDecoder')\n"
    log = f"Config:\n{model}tta_model = dict(_scope_='mmseg', type='SegTTAModel')\n"
    if val:
        lines = [dict(lr=0.01, loss=1.0, step=50)]
        lines += [dict(aAcc=90.0, mIoU=m, mAcc=80.0, step=s) for s, m in val]
        (run / 'vis_data' / f'{ts}.json').write_text(
            ''.join(json.dumps(r) + '\n' for r in lines) + '{"cut')
        log += TABLE.format(miou=val[-1][1])
    if test is not None:
        (run / f'{ts}.json').write_text(json.dumps(dict(aAcc=95.0, mIoU=test, mAcc=85.0)))
        log += TABLE.format(miou=test)
    (run / f'{ts}.log').write_text(log)


def test_gather_table(tmp_path, capsys):
    fpn = tmp_path / 'fpn_rednet50_4xb2-80k_cityscapes-512x1024'
    write_run(fpn, '20240101_000000', val=[(8000, 70.0), (80000, 77.81)])
    write_run(fpn, '20240102_000000', test=77.93)
    write_run(fpn, '20240103_000000', test=79.12, tta=True)
    upernet = tmp_path / 'my_upernet_run'  # named after the config it holds
    write_run(upernet, '20240101_000000', val=[(80000, 80.2)])
    (upernet / 'upernet_rednet50_4xb2-80k_cityscapes-512x1024.py').write_text('')
    demo = tmp_path / 'seg_demo'
    write_run(demo, '20240101_000000', val=[(600, 55.5)])
    (tmp_path / 'empty').mkdir()

    out = tmp_path / 'results.md'
    assert run_tool('analysis/gather_seg_results.py', fpn, upernet, demo, tmp_path / 'empty',
                    '--per-class', '--out', out) == 0
    lines = capsys.readouterr().out.splitlines()
    assert out.read_text() == '\n'.join(lines) + '\n'
    main_table = lines[2:lines.index('')]
    rows = {line.split(' | ')[0].lstrip('| ').split(']')[0].lstrip('['): line.split(' | ')
            for line in main_table}
    fpn_row = rows['fpn_rednet50_4xb2-80k_cityscapes-512x1024']
    assert fpn_row[1:7] == ['18.5', '293.9', '78.0', '77.93', '79.12', 'test |']
    inv_row = rows['fpn_rednet50_involution-fpn_4xb2-80k_cityscapes-512x1024']
    assert inv_row[3:7] == ['79.1', '-', '-', '- |']  # no run: published only
    up_row = rows['upernet_rednet50_4xb2-80k_cityscapes-512x1024']
    assert up_row[3:7] == ['80.6', '80.20', '-', 'val @ 80000 |']
    assert rows['seg_demo'][1:7] == ['-', '-', '-', '55.50', '-', 'val @ 600 |']
    # Per-class IoU from the last table of the log; NaN (class absent) as mmseg prints it.
    header = next(line for line in lines if line.startswith('| Model | road'))
    assert header == '| Model | road | wall | traffic light |'
    assert '| fpn_rednet50_4xb2-80k_cityscapes-512x1024 | 97.51 | nan | 60.25 |' in lines


def test_metafile_matches_the_original_readme_and_configs():
    import yaml

    with open(os.path.join(ROOT, 'configs/rednet/metafile_cityscapes.yml')) as f:
        models = {m['Name']: m for m in yaml.safe_load(f)['Models']}
    published = {  # README of d-li14/involution, "Semantic Segmentation on Cityscapes"
        'fpn_rednet50_4xb2-80k_cityscapes-512x1024': (18.5, 293.9, 78.0),
        'fpn_rednet50_involution-fpn_4xb2-80k_cityscapes-512x1024': (16.4, 205.2, 79.1),
        'upernet_rednet50_4xb2-80k_cityscapes-512x1024': (56.4, 1825.6, 80.6),
    }
    assert set(models) == set(published)
    for name, (params, flops, miou) in published.items():
        meta = models[name]['Metadata']
        assert (meta['Parameters (M)'], meta['FLOPs (G)']) == (params, flops)
        assert models[name]['Results'][0]['Metrics'] == {'mIoU': miou}
        assert meta['Input'] == '1024x2048'
        assert os.path.isfile(os.path.join(ROOT, models[name]['Config']))
        assert models[name]['Config'].endswith(name + '.py')
