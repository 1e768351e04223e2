"""Small deterministic datasets for the CPU demo and the tests."""
from .shapes_coco import SHAPE_CLASSES, make_shapes_coco

__all__ = ['SHAPE_CLASSES', 'make_shapes_coco']
