"""Make the classification demo's dataset in ImageNet's folder-per-class layout.

See mmrednet.demo.shapes_imagenet: one shape (circle, square, triangle) per
JPEG image, ``train/<wnid>/`` and ``val/<wnid>/``; deterministic.

Example:
    python tools/dataset_converters/make_shapes_imagenet.py data/shapes_imagenet
"""
import argparse

from mmrednet.demo import SHAPE_CLASSES, SHAPE_WNIDS, make_shapes_imagenet


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='dataset root to create')
    parser.add_argument('--train', type=int, default=400, help='training images per class')
    parser.add_argument('--val', type=int, default=50, help='validation images per class')
    parser.add_argument('--size', type=int, default=64, help='image side, pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    written = make_shapes_imagenet(args.out_dir, (('train', args.train), ('val', args.val)),
                                   image_size=args.size, seed=args.seed)
    for split, count in written.items():
        print(f'{split}: {count} images')
    print('classes: ' + ', '.join(f'{w} {c}' for w, c in zip(SHAPE_WNIDS, SHAPE_CLASSES,
                                                              strict=True)))


if __name__ == '__main__':
    main()
