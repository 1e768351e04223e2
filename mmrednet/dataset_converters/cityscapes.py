"""Prepare the official Cityscapes download for mmseg's ``CityscapesDataset``.

Turns every ``*_gtFine_polygons.json`` under ``<root>/gtFine`` into the
``*_gtFine_labelTrainIds.png`` that the dataset reads (19 classes, 255 =
ignore), with cityscapesscripts' own rasteriser, and writes ``train.txt``,
``val.txt`` and ``test.txt`` (one ``<city>/<city>_<seq>_<frame>`` per line), as
mmseg's converter does.

Differences from mmseg's converter:

* resumable: a label image that already exists and decodes to the size its
  JSON declares is kept, so an interrupted run continues where it stopped;
* atomic: each PNG is written to a temporary name and renamed, so an
  interruption never leaves a truncated label image behind;
* the download itself is never written to: outputs go beside the JSON files
  (the layout mmseg expects) or, with ``--out-dir``, into a mirrored tree.

``tools/dataset_converters/cityscapes.py`` is its command line.
"""
import json
import os
import os.path as osp
from functools import partial
from typing import List, Optional, Sequence, Tuple

from mmengine.utils import mkdir_or_exist, scandir, track_parallel_progress, track_progress
from PIL import Image

POLYGON_SUFFIX = '_polygons.json'
LABEL_SUFFIX = '_labelTrainIds.png'
SPLITS = ('train', 'val', 'test')


def label_path_for(json_path: str, gt_root: str, out_gt_root: str) -> str:
    """The label image written for ``json_path`` (same relative path)."""
    rel = osp.relpath(json_path, gt_root)
    return osp.join(out_gt_root, rel[:-len(POLYGON_SUFFIX)] + LABEL_SUFFIX)


def is_complete(label_path: str, json_path: str) -> bool:
    """Whether ``label_path`` is a readable image of the size ``json_path`` declares.

    Decoding the whole image catches files truncated by another tool (ours
    never leaves one: it renames complete files into place).
    """
    if not osp.isfile(label_path):
        return False
    try:
        with open(json_path, encoding='utf-8') as f:
            meta = json.load(f)
        with Image.open(label_path) as img:
            img.load()
            return img.mode == 'L' and img.size == (meta['imgWidth'], meta['imgHeight'])
    except (OSError, ValueError, KeyError):
        return False


def convert_one(json_path: str, gt_root: str, out_gt_root: str) -> str:
    """Rasterise one polygon file to trainIds; returns 'skipped' or 'written'."""
    # Imported here so that ``--help`` works without cityscapesscripts.
    from cityscapesscripts.preparation.json2labelImg import json2labelImg

    label_path = label_path_for(json_path, gt_root, out_gt_root)
    if is_complete(label_path, json_path):
        return 'skipped'
    mkdir_or_exist(osp.dirname(label_path))
    # PIL picks the format from the extension, so the temporary name ends in
    # .png; the pid keeps parallel or concurrent runs from sharing it.
    tmp_path = f'{label_path[:-4]}.tmp{os.getpid()}.png'
    try:
        json2labelImg(json_path, tmp_path, 'trainIds')
        os.replace(tmp_path, label_path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
    return 'written'


def find_polygons(gt_root: str) -> List[str]:
    """All polygon files under ``gt_root``, sorted for a stable order."""
    return sorted(
        osp.join(gt_root, p) for p in scandir(gt_root, POLYGON_SUFFIX, recursive=True))


def write_split_lists(gt_root: str, out_dir: str, gt_dir: str,
                      splits: Sequence[str] = SPLITS) -> List[Tuple[str, int]]:
    """Write ``<split>.txt`` files listing the frames that have polygons."""
    written = []
    for split in splits:
        split_root = osp.join(gt_root, split)
        if not osp.isdir(split_root):
            continue
        suffix = f'_{gt_dir}{POLYGON_SUFFIX}'
        names = sorted(p[:-len(suffix)] for p in scandir(split_root, suffix, recursive=True))
        # Write-then-rename here too: a half-written list is worse than none.
        path = osp.join(out_dir, f'{split}.txt')
        with open(path + '.tmp', 'w') as f:
            f.writelines(name + '\n' for name in names)
        os.replace(path + '.tmp', path)
        written.append((path, len(names)))
    return written


def convert(cityscapes_path: str, out_dir: Optional[str] = None, gt_dir: str = 'gtFine',
            nproc: int = 1) -> dict:
    """Convert a Cityscapes tree; returns counts of written and skipped labels."""
    out_dir = out_dir or cityscapes_path
    gt_root = osp.join(cityscapes_path, gt_dir)
    if not osp.isdir(gt_root):
        raise FileNotFoundError(
            f'{gt_root} does not exist: expected the official layout '
            f'<root>/{gt_dir}/{{train,val,test}}/<city>/*{POLYGON_SUFFIX} '
            '(unzip gtFine_trainvaltest.zip into <root>)')
    out_gt_root = osp.join(out_dir, gt_dir)
    mkdir_or_exist(out_dir)

    json_files = find_polygons(gt_root)
    work = partial(convert_one, gt_root=gt_root, out_gt_root=out_gt_root)
    if not json_files:
        results = []
    elif nproc > 1:
        results = track_parallel_progress(work, json_files, nproc)
    else:
        results = track_progress(work, json_files)
    splits = write_split_lists(gt_root, out_dir, gt_dir)
    return dict(written=results.count('written'), skipped=results.count('skipped'),
                splits=splits)
