"""Gather the mIoU of segmentation runs into the README's results table.

Reads what mmengine leaves in each work dir (``<work_dir>/<timestamp>/``):

* a test run (``tools/test.py``) writes ``<timestamp>.json``, one dict with
  ``mIoU``; it is multi-scale + flip when the ``model`` of the config its log
  shows is a ``SegTTAModel`` (``tools/test.py --tta``);
* a training run writes ``vis_data/<timestamp>.json``, one line per logged
  step; the lines with ``mIoU`` are validations (the last one is used when
  there is no test run);
* ``<timestamp>.log`` holds mmseg's per-class IoU table (``--per-class``).

A work dir belongs to the metafile model whose ``Name`` equals the work
dir's name (the default ``work_dirs/<config name>``) or the name of a config
``*.py`` in it. Every metafile model gets a row (ours: ``-`` without a run),
runs of other configs are appended with the published columns empty.

``tools/analysis/gather_seg_results.py`` is its command line.
"""
import glob
import json
import os.path as osp
import re
from typing import Dict, List, Optional

import yaml

# Rows of mmseg's per-class table: "|  road  | 97.8 | 98.9 |" (IoU, Acc).
CLASS_ROW = re.compile(r'^\|\s*([^|]+?)\s*\|\s*([\d.]+|nan)\s*\|\s*([\d.]+|nan)\s*\|$')


def _read_json_lines(path: str) -> List[dict]:
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a killed run
    return records


def per_class_iou(log_path: str) -> Dict[str, float]:
    """The last per-class table of an mmseg log: ``{class: IoU}``."""
    tables, current = [], None
    if not osp.isfile(log_path):
        return {}
    with open(log_path, errors='replace') as f:
        for line in f:
            line = line.strip()
            if re.match(r'^\|\s*Class\s*\|\s*IoU\s*\|', line):
                current = {}
                tables.append(current)
            elif current is not None and line.startswith('|'):
                match = CLASS_ROW.match(line)
                if match:
                    current[match.group(1)] = float(match.group(2))
            elif current is not None and not line.startswith('+'):
                current = None
    return tables[-1] if tables else {}


def is_tta_log(log_path: str) -> bool:
    """Whether the config logged by the Runner has a ``SegTTAModel`` as ``model``.

    Every mmseg config carries ``tta_model = dict(type='SegTTAModel')``; only
    ``--tta`` makes it the ``model``. The logged config is yapf-formatted
    Python: the ``model`` entry runs from ``model = dict(`` to the next line
    that starts in column 0.
    """
    if not osp.isfile(log_path):
        return False
    block, inside = [], False
    with open(log_path, errors='replace') as f:
        for line in f:
            if line.startswith('model = dict('):
                block, inside = [line], True
            elif inside and line[:1] in (' ', '\t', ')'):
                block.append(line)
            else:
                inside = False
    # The segmentor's own type sits inside module=dict(...), indented deeper.
    return any(re.match(r'^(model = dict\(|    (?! ))', line) and "type='SegTTAModel'" in line
               for line in block)


def read_run(work_dir: str) -> Dict[str, Optional[dict]]:
    """Latest single-scale test, latest ms+flip test and last validation of a work dir.

    Each is ``dict(mIoU=..., aAcc=..., mAcc=..., per_class={...}, source=path,
    step=...)`` or None.
    """
    found = dict(test=None, tta=None, val=None)
    for ts_dir in sorted(glob.glob(osp.join(work_dir, '*', ''))):
        ts = osp.basename(osp.normpath(ts_dir))
        log_path = osp.join(ts_dir, f'{ts}.log')
        test_json = osp.join(ts_dir, f'{ts}.json')
        val_json = osp.join(ts_dir, 'vis_data', f'{ts}.json')
        if osp.isfile(test_json):
            records = [r for r in _read_json_lines(test_json) if 'mIoU' in r]
            if records:
                found['tta' if is_tta_log(log_path) else 'test'] = dict(
                    records[-1], per_class=per_class_iou(log_path), source=test_json)
        if osp.isfile(val_json):
            records = [r for r in _read_json_lines(val_json) if 'mIoU' in r]
            if records:
                found['val'] = dict(records[-1], per_class=per_class_iou(log_path),
                                    source=val_json)
    return found


def _names_of(work_dir: str) -> List[str]:
    names = [osp.basename(osp.normpath(work_dir))]
    names += [osp.splitext(osp.basename(p))[0] for p in glob.glob(osp.join(work_dir, '*.py'))]
    return names


def _fmt(value, digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def gather(work_dirs: List[str], metafile: str, per_class: bool = False) -> List[str]:
    """Markdown lines of the results table (and of the per-class IoU table).

    Args:
        work_dirs (list[str]): Work dirs of training/test runs; missing ones are skipped.
        metafile (str): The metafile with the published figures
            (``configs/rednet/metafile_cityscapes.yml``).
        per_class (bool): Add a per-class IoU table after an empty line.

    Returns:
        list[str]: The lines, without line ends.
    """
    with open(metafile) as f:
        models = yaml.safe_load(f)['Models']
    runs = {wd: read_run(wd) for wd in work_dirs if osp.isdir(wd)}
    rows = []
    used = set()
    for model in models:
        meta = model.get('Metadata', {})
        published = {}
        for result in model.get('Results', []):
            published.update(result.get('Metrics', {}))
        matches = [wd for wd in runs if model['Name'] in _names_of(wd)]
        used.update(matches)
        run = runs[matches[-1]] if matches else dict(test=None, tta=None, val=None)
        rows.append((model['Name'], model.get('Config'), meta.get('Parameters (M)'),
                     meta.get('FLOPs (G)'), published.get('mIoU'), run))
    for wd, run in runs.items():
        if wd not in used and any(run.values()):
            rows.append((osp.basename(osp.normpath(wd)), None, None, None, None, run))

    lines = ['| Model | Params (M) | FLOPs (G) | mIoU published | mIoU ours | '
             'mIoU ours (ms+flip) | from |',
             '|---|---:|---:|---:|---:|---:|---|']
    for name, config, params, flops, pub, run in rows:
        single = run['test'] or run['val']
        source = '-'
        if run['test']:
            source = 'test'
        elif run['val']:
            source = f"val @ {run['val'].get('step', '?')}"
        label = f'[{name}]({config})' if config else name
        lines.append(f"| {label} | {_fmt(params)} | {_fmt(flops)} | {_fmt(pub)} | "
                     f"{_fmt(single and single['mIoU'], 2)} | "
                     f"{_fmt(run['tta'] and run['tta']['mIoU'], 2)} | {source} |")
    if per_class:
        classes = []
        for *_, run in rows:
            for result in run.values():
                for cls in (result or {}).get('per_class', {}):
                    if cls not in classes:
                        classes.append(cls)
        lines += ['', '| Model | ' + ' | '.join(classes) + ' |',
                  '|---|' + '---:|' * len(classes)]
        for name, *_, run in rows:
            result = run['test'] or run['val']
            if result and result.get('per_class'):
                ious = [result['per_class'].get(c) for c in classes]
                lines.append(f'| {name} | ' + ' | '.join(_fmt(v, 2) for v in ious) + ' |')
    return lines
