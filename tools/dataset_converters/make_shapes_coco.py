"""Make the demo's COCO-format shapes dataset (see mmrednet.demo.shapes_coco).

Example:
    python tools/dataset_converters/make_shapes_coco.py data/shapes_coco
"""
import argparse

from mmrednet.demo import SHAPE_CLASSES, make_shapes_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='dataset root to create')
    parser.add_argument('--train', type=int, default=200, help='training images')
    parser.add_argument('--val', type=int, default=50, help='validation images')
    parser.add_argument('--size', type=int, default=160, help='image side, pixels')
    parser.add_argument('--max-objects', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    paths = make_shapes_coco(args.out_dir, (('train', args.train), ('val', args.val)),
                             image_size=args.size, max_objects=args.max_objects, seed=args.seed)
    for split, path in paths.items():
        print(f'{split}: {path}')
    print(f'classes: {", ".join(SHAPE_CLASSES)}')


if __name__ == '__main__':
    main()
