"""A tiny COCO-format instance dataset: coloured shapes on textured backgrounds.

Everything is drawn from one seeded generator, so the same arguments give
byte-identical images and annotations. The class of an instance is its shape
(colours are random), boxes are the tight boxes of the drawn polygons and the
masks are those polygons (COCO ``segmentation`` polygons), so every annotation
matches the pixels exactly.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .shapes import SHAPE_CLASSES, paint_shape, textured_background


def _draw_image(rng: np.random.Generator, size: int, max_objects: int,
                min_radius: float, max_radius: float) -> Tuple[np.ndarray, List[Dict]]:
    img = textured_background(rng, size)
    placed: List[Tuple[float, float, float]] = []
    objects = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):  # rejection-sample a free spot (no overlaps)
            r = rng.uniform(min_radius, max_radius)
            cx, cy = rng.uniform(r + 1, size - r - 1, 2)
            if all(math.hypot(cx - x, cy - y) > r + q + 2 for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        label = int(rng.integers(len(SHAPE_CLASSES)))
        objects.append(dict(label=label, polygon=paint_shape(img, rng, label, cx, cy, r)))
    return img, objects


def _annotation(obj: Dict, ann_id: int, image_id: int, size: int) -> Dict:
    # Box and area from the rasterised mask, so they agree with the pixels.
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [obj['polygon']], 1, cv2.LINE_8)
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return dict(id=ann_id, image_id=image_id, category_id=obj['label'] + 1,
                bbox=[int(x0), int(y0), int(x1 - x0), int(y1 - y0)], area=int(mask.sum()),
                segmentation=[obj['polygon'].astype(float).ravel().tolist()], iscrowd=0)


def make_shapes_coco(out_dir: str,
                     splits: Sequence[Tuple[str, int]] = (('train', 200), ('val', 50)),
                     image_size: int = 160,
                     max_objects: int = 4,
                     radius: Tuple[float, float] = (12, 36),
                     seed: int = 0) -> Dict[str, str]:
    """Write the dataset in COCO layout and return the annotation file per split.

    Layout: ``out_dir/{split}/{id:06d}.png`` and
    ``out_dir/annotations/instances_{split}.json`` (categories 1..3 named in
    :data:`SHAPE_CLASSES`).

    Args:
        out_dir (str): Root of the dataset (created).
        splits (sequence of (str, int)): Split names and their image counts.
        image_size (int): Side of the square images, pixels.
        max_objects (int): Most instances per image (at least one).
        radius (tuple[float, float]): Range of the shapes' circumradius, pixels.
        seed (int): Seed of the generator; splits draw from disjoint streams.

    Returns:
        dict[str, str]: ``{split: path of instances_{split}.json}``.
    """
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(SHAPE_CLASSES)]
    paths = {}
    for split_index, (split, count) in enumerate(splits):
        rng = np.random.default_rng([seed, split_index])
        os.makedirs(osp.join(out_dir, split), exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, count + 1):
            img, objects = _draw_image(rng, image_size, max_objects, *radius)
            file_name = f'{image_id:06d}.png'
            cv2.imwrite(osp.join(out_dir, split, file_name), img)
            images.append(dict(id=image_id, file_name=file_name, width=image_size,
                               height=image_size))
            for obj in objects:
                annotations.append(_annotation(obj, len(annotations) + 1, image_id, image_size))
        paths[split] = osp.join(out_dir, 'annotations', f'instances_{split}.json')
        with open(paths[split], 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return paths
