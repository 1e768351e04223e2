"""Small deterministic datasets for the CPU demos and the tests."""
from .shapes import SHAPE_CLASSES
from .shapes_cityscapes import make_shapes_cityscapes
from .shapes_coco import make_shapes_coco
from .shapes_imagenet import SHAPE_WNIDS, make_shapes_imagenet

__all__ = ['SHAPE_CLASSES', 'SHAPE_WNIDS', 'make_shapes_cityscapes', 'make_shapes_coco',
           'make_shapes_imagenet']
