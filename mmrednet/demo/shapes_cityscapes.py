"""A small, deterministic street-scene dataset in the Cityscapes layout.

Each image is a cartoon street: sky, buildings with window grids, trees,
road with lane marks, sidewalks, cars, people and an ego-vehicle strip (the
ignore label 255), every region filled with its own noisy texture. Seven of
the 19 Cityscapes classes occur (road, sidewalk, building, vegetation, sky,
person, car). The scene is described as polygons and written exactly as the
official download is laid out::

    <out>/leftImg8bit/{train,val}/<city>/<city>_000000_0000NN_leftImg8bit.png
    <out>/gtFine/{train,val}/<city>/<city>_000000_0000NN_gtFine_polygons.json
    <out>/gtFine/{train,val}/<city>/<city>_000000_0000NN_gtFine_labelTrainIds.png

The label images are rasterised from the polygons the way cityscapesscripts
does it (PIL polygons in file order), so the converter
(:mod:`mmrednet.dataset_converters.cityscapes`) reproduces them bit for bit;
``label_ids=False`` leaves them to the converter, as with a real download.
``tools/dataset_converters/make_shapes_cityscapes.py`` is its command line.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

# Cityscapes label name -> trainId for the classes drawn here (see
# cityscapesscripts.helpers.labels); 'ego vehicle' is void (255).
TRAIN_IDS = {
    'road': 0, 'sidewalk': 1, 'building': 2, 'vegetation': 8, 'sky': 10,
    'person': 11, 'car': 13, 'ego vehicle': 255
}
SPLIT_CITIES = {'train': ('aachen', 'bremen'), 'val': ('frankfurt', )}

Polygon = List[Tuple[int, int]]


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 14) -> Polygon:
    """A jittered circle, the outline of a tree crown."""
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radii = r * rng.uniform(0.75, 1.15, n)
    return [(int(cx + a * np.cos(t)), int(cy + a * np.sin(t)))
            for t, a in zip(angles, radii, strict=True)]


def make_scene(rng: np.random.Generator, width: int, height: int) -> List[Tuple[str, Polygon]]:
    """Objects ``(label, polygon)`` in drawing order (later ones cover earlier)."""
    w, h = width, height
    horizon = int(h * rng.uniform(0.4, 0.5))
    objs = [('sky', [(0, 0), (w, 0), (w, horizon + 4), (0, horizon + 4)])]

    x = int(rng.integers(-20, 10))
    while x < w:
        bw = int(w * rng.uniform(0.08, 0.22))
        if rng.random() > 0.25:  # gaps between buildings show the sky
            top = int(rng.uniform(0.05, 0.8) * horizon)
            objs.append(('building', [(x, top), (x + bw, top), (x + bw, horizon + 2),
                                      (x, horizon + 2)]))
        x += bw + int(rng.integers(0, 12))

    for _ in range(int(rng.integers(1, 4))):
        r = h * rng.uniform(0.07, 0.14)
        objs.append(('vegetation', _blob(rng, rng.uniform(0, w), horizon - 0.6 * r, r)))

    objs.append(('road', [(0, horizon), (w, horizon), (w, h), (0, h)]))
    ground = h - horizon
    objs.append(('sidewalk', [(0, horizon), (int(w * 0.3), horizon),
                              (0, horizon + int(ground * rng.uniform(0.5, 0.8)))]))
    objs.append(('sidewalk', [(int(w * 0.7), horizon), (w, horizon),
                              (w, horizon + int(ground * rng.uniform(0.5, 0.8)))]))

    for _ in range(int(rng.integers(0, 3))):  # people on the sidewalks
        side = rng.integers(0, 2)
        foot = horizon + ground * rng.uniform(0.15, 0.4)
        px = w * (rng.uniform(0.02, 0.12) if side == 0 else rng.uniform(0.88, 0.98))
        ph = (foot - horizon) * 1.6 + 12
        pw = ph * 0.28
        outline = [(-0.5, 0), (-0.5, 0.8), (-0.25, 1), (0.25, 1), (0.5, 0.8), (0.5, 0)]
        objs.append(('person', [(int(px + u * pw), int(foot - v * ph)) for u, v in outline]))

    cars = sorted(rng.uniform(0.2, 0.85, int(rng.integers(1, 4))))
    for depth in cars:  # far cars first, so near ones cover them
        bottom = horizon + ground * depth
        cw = w * (0.08 + 0.3 * depth)
        ch = cw * 0.45
        cx0 = rng.uniform(0.15 * w, 0.85 * w - cw)
        cx1 = cx0 + cw
        objs.append(('car', [(int(cx0), int(bottom)), (int(cx0), int(bottom - 0.55 * ch)),
                             (int(cx0 + 0.2 * cw), int(bottom - ch)),
                             (int(cx0 + 0.8 * cw), int(bottom - ch)),
                             (int(cx1), int(bottom - 0.55 * ch)), (int(cx1), int(bottom))]))

    ego = h - int(h * 0.06)
    objs.append(('ego vehicle', [(0, h), (0, ego + 6), (w // 4, ego), (3 * w // 4, ego),
                                 (w, ego + 6), (w, h)]))
    return objs


def texture(rng: np.random.Generator, label: str, width: int, height: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 fill for one object; each class has its own look."""
    yy, xx = np.mgrid[0:height, 0:width]

    def noise(scale: float) -> np.ndarray:
        return rng.normal(0, scale, (height, width, 1))

    def colour(base, spread: float = 15) -> np.ndarray:
        return np.asarray(base, float) + rng.uniform(-spread, spread, 3)

    if label == 'sky':
        top, bottom = colour((70, 130, 200)), colour((170, 200, 230))
        t = (yy / max(height - 1, 1))[..., None]
        img = top * (1 - t) + bottom * t + noise(3)
    elif label == 'building':
        img = colour((120, 110, 100), 40) + noise(6)
        step_x, step_y = rng.integers(10, 18), rng.integers(12, 20)
        windows = ((xx % step_x) < step_x // 2) & ((yy % step_y) < step_y // 2)
        img[windows] = img[windows] * 0.45 + np.asarray((40, 60, 90)) * 0.55
    elif label == 'vegetation':
        img = colour((60, 120, 40), 20) + noise(25)
    elif label == 'road':
        img = colour((80, 80, 85), 10) + noise(8)
        lane = (np.abs(xx - width // 2) < 3) & ((yy // 12) % 2 == 0)
        img[lane] = (220, 220, 210)
    elif label == 'sidewalk':
        img = colour((175, 160, 165), 15) + noise(6)
        grout = (xx % 14 == 0) | (yy % 9 == 0)
        img[grout] *= 0.7
    elif label == 'person':
        img = colour((150, 60, 60), 60) + noise(10)
    elif label == 'car':
        img = rng.uniform(30, 230, 3) + noise(5)
        glass = (yy % 7) < 2
        img[glass] *= 0.85
    else:  # the ego vehicle's bonnet
        img = colour((25, 25, 30), 5) + noise(3)
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_labels(objs, width: int, height: int) -> Image.Image:
    """Rasterise like cityscapesscripts' json2labelImg: PIL polygons, file order."""
    label = Image.new('L', (width, height), 255)
    drawer = ImageDraw.Draw(label)
    for name, poly in objs:
        drawer.polygon(poly, fill=TRAIN_IDS[name])
    return label


def draw_image(rng: np.random.Generator, objs, width: int, height: int) -> Image.Image:
    """Paint each object's texture through the same PIL polygon mask."""
    img = np.zeros((height, width, 3), np.uint8)
    for name, poly in objs:
        mask = Image.new('1', (width, height), 0)
        ImageDraw.Draw(mask).polygon(poly, fill=1)
        mask = np.asarray(mask, bool)
        img[mask] = texture(rng, name, width, height)[mask]
    return Image.fromarray(img)


def _save_atomic(write, path: str) -> None:
    tmp = f'{path}.tmp{os.getpid()}{osp.splitext(path)[1]}'
    write(tmp)
    os.replace(tmp, path)


def make_shapes_cityscapes(out_dir: str, num_train: int = 48, num_val: int = 12,
                           width: int = 256, height: int = 128, seed: int = 0,
                           label_ids: bool = True) -> Dict[str, List[str]]:
    """Write the dataset under ``out_dir``; deterministic in ``seed``.

    Args:
        out_dir (str): Dataset root (gets ``leftImg8bit/`` and ``gtFine/``).
        num_train (int): Training frames. Defaults to 48.
        num_val (int): Validation frames. Defaults to 12.
        width (int): Image width W, pixels. Defaults to 256.
        height (int): Image height H, pixels. Defaults to 128.
        seed (int): Seed of every frame's generator. Defaults to 0.
        label_ids (bool): Also write the ``(H, W)`` ``labelTrainIds`` images;
            False writes only images and polygons, as the official download.

    Returns:
        dict[str, list[str]]: ``{split: ['<city>/<frame name>', ...]}``.
    """
    frames = {}
    for split_index, (split, count) in enumerate((('train', num_train), ('val', num_val))):
        cities = SPLIT_CITIES[split]
        frames[split] = []
        for i in range(count):
            city = cities[i % len(cities)]
            name = f'{city}_000000_{i:06d}'
            # One generator per frame: a frame does not depend on the counts.
            rng = np.random.default_rng([seed, split_index, i])
            objs = make_scene(rng, width, height)
            img_dir = osp.join(out_dir, 'leftImg8bit', split, city)
            gt_dir = osp.join(out_dir, 'gtFine', split, city)
            os.makedirs(img_dir, exist_ok=True)
            os.makedirs(gt_dir, exist_ok=True)
            image = draw_image(rng, objs, width, height)
            _save_atomic(image.save, osp.join(img_dir, f'{name}_leftImg8bit.png'))
            polygons = dict(imgHeight=height, imgWidth=width,
                            objects=[dict(label=n, polygon=[list(p) for p in poly])
                                     for n, poly in objs])

            def write_json(path, polygons=polygons):
                with open(path, 'w') as f:
                    json.dump(polygons, f)

            _save_atomic(write_json, osp.join(gt_dir, f'{name}_gtFine_polygons.json'))
            if label_ids:
                _save_atomic(draw_labels(objs, width, height).save,
                             osp.join(gt_dir, f'{name}_gtFine_labelTrainIds.png'))
            frames[split].append(f'{city}/{name}')
    return frames
