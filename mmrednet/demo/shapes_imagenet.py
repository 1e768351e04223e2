"""A tiny classification dataset in ImageNet's folder-per-class layout: one shape per image.

The class of an image is the shape drawn on it (circle, square or triangle;
colours, sizes, positions and backgrounds are random). Each image comes from
its own seeded generator, so the same arguments give byte-identical files
whatever the split sizes. Layout, as ImageNet's train folder::

    out_dir/{train,val}/<wnid>/<wnid>_<n>.JPEG
    out_dir/LOC_synset_mapping.txt      # "<wnid> <class name>" per line, in label order,
                                        # written last (a complete dataset has it)

mmpretrain's ``CustomDataset`` (and ``ImageNet`` without ``meta/``) reads it
with ``ann_file=''``: classes are the sorted folder names, as for ImageNet.
"""
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from .shapes import SHAPE_CLASSES, paint_shape, textured_background

# ImageNet-style WordNet ids (none of them is a real one), sorted like the labels.
SHAPE_WNIDS = tuple(f'n9000000{i + 1}' for i in range(len(SHAPE_CLASSES)))


def draw_shape_image(rng: np.random.Generator, label: int, size: int,
                     radius: Tuple[float, float]) -> np.ndarray:
    """A ``(size, size, 3)`` BGR image with one shape of class ``label`` on a texture."""
    img = textured_background(rng, size)
    r = rng.uniform(*radius)
    cx, cy = rng.uniform(r + 1, size - r - 1, 2)
    paint_shape(img, rng, label, cx, cy, r)
    return img


def make_shapes_imagenet(out_dir: str,
                         splits: Sequence[Tuple[str, int]] = (('train', 400), ('val', 50)),
                         image_size: int = 64,
                         radius: Tuple[float, float] = (12, 28),
                         seed: int = 0) -> Dict[str, int]:
    """Write the dataset; images per class per split are given by ``splits``.

    Args:
        out_dir (str): Root of the dataset (created).
        splits (sequence of (str, int)): Split names and their images per class.
        image_size (int): Side of the square images, pixels.
        radius (tuple[float, float]): Range of the shapes' circumradius, pixels.
        seed (int): Seed; every image draws from ``default_rng([seed, split, n])``.

    Returns:
        dict[str, int]: ``{split: number of images written}``.
    """
    if radius[1] >= image_size / 2 - 1:
        raise ValueError(f'radius {radius} does not fit images of {image_size} px')
    written = {}
    for split_index, (split, per_class) in enumerate(splits):
        for label, wnid in enumerate(SHAPE_WNIDS):
            folder = osp.join(out_dir, split, wnid)
            os.makedirs(folder, exist_ok=True)
            for n in range(per_class):
                rng = np.random.default_rng([seed, split_index, label, n])
                img = draw_shape_image(rng, label, image_size, radius)
                cv2.imwrite(osp.join(folder, f'{wnid}_{n}.JPEG'), img,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
        written[split] = per_class * len(SHAPE_WNIDS)
    # Written last: its presence says the dataset is complete (tools/run_cls_demo.sh).
    with open(osp.join(out_dir, 'LOC_synset_mapping.txt'), 'w') as f:
        f.writelines(f'{wnid} {name}\n' for wnid, name in zip(SHAPE_WNIDS, SHAPE_CLASSES,
                                                                strict=True))
    return written
