"""Cityscapes preparation: the converter on a tiny fake download, and the
synthetic dataset the demo trains on."""
import hashlib
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from mmrednet.dataset_converters import cityscapes
from mmrednet.demo import make_shapes_cityscapes

from .tools import run_tool

W, H = 8, 6
# Objects in file order; later ones are drawn over earlier ones.
OBJECTS = [
    dict(label='road', polygon=[[0, 0], [7, 0], [7, 5], [0, 5]]),
    dict(label='car', polygon=[[2, 2], [5, 2], [5, 4], [2, 4]]),
    # A "group" label falls back to its class; a deleted one is not drawn;
    # a license plate (id -1) is never drawn; the ego vehicle is void (255).
    dict(label='persongroup', polygon=[[0, 0], [1, 0], [1, 1], [0, 1]]),
    dict(label='sky', polygon=[[6, 0], [7, 0], [7, 1], [6, 1]], deleted=1),
    dict(label='license plate', polygon=[[3, 3], [4, 3], [4, 4], [3, 4]]),
    dict(label='ego vehicle', polygon=[[0, 5], [7, 5], [7, 5], [0, 5]]),
]


def expected_train_ids():
    # PIL fills axis-aligned polygons including their boundary pixels.
    label = np.zeros((H, W), np.uint8)  # road
    label[2:5, 2:6] = 13  # car
    label[0:2, 0:2] = 11  # person
    label[5, :] = 255  # ego vehicle
    return label


def fake_download(root):
    """leftImg8bit/ and gtFine/ polygons for 2 train and 1 val frame."""
    frames = [('train', 'aachen', 'aachen_000000_000019'), ('train', 'bremen',
                                                            'bremen_000001_000002'),
              ('val', 'lindau', 'lindau_000000_000003')]
    for split, city, name in frames:
        img_dir = osp.join(root, 'leftImg8bit', split, city)
        gt_dir = osp.join(root, 'gtFine', split, city)
        os.makedirs(img_dir)
        os.makedirs(gt_dir)
        Image.new('RGB', (W, H), (10, 20, 30)).save(osp.join(img_dir, f'{name}_leftImg8bit.png'))
        with open(osp.join(gt_dir, f'{name}_gtFine_polygons.json'), 'w') as f:
            json.dump(dict(imgHeight=H, imgWidth=W, objects=OBJECTS), f)
    return frames


def snapshot(root):
    """Path -> content hash of every file, and nothing else."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def converter():
    return cityscapes


def test_converter_polygons_to_train_ids(converter, tmp_path):
    root = str(tmp_path)
    frames = fake_download(root)
    before = snapshot(root)
    summary = converter.convert(root, nproc=1)
    assert (summary['written'], summary['skipped']) == (3, 0)

    after = snapshot(root)
    assert {k: after[k] for k in before} == before  # the download is untouched
    new = sorted(set(after) - set(before))
    assert new == sorted(
        [f'gtFine/{s}/{c}/{n}_gtFine_labelTrainIds.png' for s, c, n in frames] +
        ['train.txt', 'val.txt'])
    for path in new[:3]:
        label = np.asarray(Image.open(osp.join(root, path)))
        np.testing.assert_array_equal(label, expected_train_ids())
    with open(osp.join(root, 'train.txt')) as f:
        assert f.read().split() == ['aachen/aachen_000000_000019', 'bremen/bremen_000001_000002']
    with open(osp.join(root, 'val.txt')) as f:
        assert f.read().split() == ['lindau/lindau_000000_000003']


def test_converter_resumes(converter, tmp_path):
    root = str(tmp_path)
    fake_download(root)
    converter.convert(root)
    labels = sorted(p for p in snapshot(root) if p.endswith('_labelTrainIds.png'))
    first, second, third = (osp.join(root, p) for p in labels)
    with open(first, 'rb') as f:  # an interrupted foreign write: a truncated PNG
        data = f.read()
    with open(first, 'wb') as f:
        f.write(data[:len(data) // 2])
    os.remove(second)
    mtime = os.stat(third).st_mtime_ns

    summary = converter.convert(root, nproc=2)
    assert (summary['written'], summary['skipped']) == (2, 1)
    assert os.stat(third).st_mtime_ns == mtime  # complete outputs are left alone
    for path in (first, second):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), expected_train_ids())
    assert not [p for p in snapshot(root) if '.tmp' in p]  # no temporary left behind


def test_converter_out_dir_leaves_the_download_alone(converter, tmp_path):
    src, out = str(tmp_path / 'download'), str(tmp_path / 'prepared')
    fake_download(src)
    before = snapshot(src)
    assert run_tool('dataset_converters/cityscapes.py', src, '--out-dir', out) == 0
    assert snapshot(src) == before
    assert sorted(snapshot(out)) == [
        'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png',
        'gtFine/train/bremen/bremen_000001_000002_gtFine_labelTrainIds.png',
        'gtFine/val/lindau/lindau_000000_000003_gtFine_labelTrainIds.png', 'train.txt',
        'val.txt'
    ]


def test_converter_says_what_layout_it_wants(converter, tmp_path):
    with pytest.raises(FileNotFoundError, match='gtFine_trainvaltest.zip'):
        converter.convert(str(tmp_path))


def test_shapes_dataset_is_deterministic_and_matches_the_converter(converter, tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    frames = make_shapes_cityscapes(a, num_train=3, num_val=2, width=96, height=48, seed=3)
    assert run_tool('dataset_converters/make_shapes_cityscapes.py', b, '--num-train', 3,
                    '--num-val', 2, '--width', 96, '--height', 48, '--seed', 3,
                    '--no-label-ids') == 0
    assert frames['val'] == ['frankfurt/frankfurt_000000_000000',
                             'frankfurt/frankfurt_000000_000001']
    snap_a, snap_b = snapshot(a), snapshot(b)
    labels = {p for p in snap_a if p.endswith('_gtFine_labelTrainIds.png')}
    assert len(labels) == 5 and set(snap_a) - labels == set(snap_b)
    assert {p: snap_a[p] for p in snap_b} == snap_b  # same seed, same bytes

    # A real-download-like tree (no label images) converts to the same labels.
    converter.convert(b)
    snap_b = snapshot(b)
    assert {p: snap_b[p] for p in labels} == {p: snap_a[p] for p in labels}

    ids = np.unique(np.concatenate(
        [np.asarray(Image.open(osp.join(a, p))).ravel() for p in labels]))
    assert set(ids) <= {0, 1, 2, 8, 10, 11, 13, 255} and {0, 2, 10, 13, 255} <= set(ids)
    img = Image.open(osp.join(a, 'leftImg8bit/train/aachen/aachen_000000_000000_leftImg8bit.png'))
    assert img.mode == 'RGB' and img.size == (96, 48)
