"""Drawing of the demo datasets: saturated shapes on low-contrast textured backgrounds.

Shared by the COCO-format detection dataset (:mod:`.shapes_coco`) and the
ImageNet-layout classification dataset (:mod:`.shapes_imagenet`). Every draw
comes from the caller's seeded generator, so images are reproducible.
"""
import math

import cv2
import numpy as np

SHAPE_CLASSES = ('circle', 'square', 'triangle')


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices ``(V, 2)`` (x, y) of a shape of circumradius ``r``."""
    sides = {'circle': 32, 'square': 4, 'triangle': 3}[shape]
    # Squares and triangles turn a little; a circle's angle changes nothing.
    t = angle + np.arange(sides) * 2 * math.pi / sides
    if shape == 'square':
        t = t + math.pi / 4
    elif shape == 'triangle':
        t = t - math.pi / 2
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 low-contrast texture: colour gradient, stripes, noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(60, 190, 3)
    tilt = rng.uniform(-40, 40, (2, 3))
    img = base + xx[..., None] * tilt[0] + yy[..., None] * tilt[1]
    freq, phase, theta = rng.uniform(4, 12), rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi)
    stripes = np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + phase)
    img += stripes[..., None] * rng.uniform(5, 20)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def paint_shape(img: np.ndarray, rng: np.random.Generator, label: int, cx: float, cy: float,
                r: float) -> np.ndarray:
    """Fill shape ``SHAPE_CLASSES[label]`` into ``img`` (in place), slightly turned.

    Returns:
        np.ndarray: The drawn polygon, ``(V, 2)`` int32 pixel vertices.
    """
    poly = np.round(shape_polygon(SHAPE_CLASSES[label], cx, cy, r,
                                  rng.uniform(0, math.pi / 6))).astype(np.int32)
    # Saturated colours, far from the grey-ish background.
    colour = rng.permutation([rng.uniform(200, 255), rng.uniform(0, 60), rng.uniform(0, 255)])
    cv2.fillPoly(img, [poly], colour.tolist(), cv2.LINE_8)
    return poly
