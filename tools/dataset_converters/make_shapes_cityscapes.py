"""Make the segmentation demo's street scenes in the Cityscapes layout.

See mmrednet.demo.shapes_cityscapes: images, polygon JSONs and (unless
``--no-label-ids``) labelTrainIds PNGs under leftImg8bit/ and gtFine/.

Example::

    python tools/dataset_converters/make_shapes_cityscapes.py data/shapes_cityscapes
"""
import argparse

from mmrednet.demo import make_shapes_cityscapes


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='dataset root (gets leftImg8bit/ and gtFine/)')
    parser.add_argument('--num-train', type=int, default=48)
    parser.add_argument('--num-val', type=int, default=12)
    parser.add_argument('--width', type=int, default=256)
    parser.add_argument('--height', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-label-ids', action='store_true',
                        help='write only images and polygons, like the official download '
                        '(then run tools/dataset_converters/cityscapes.py)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    frames = make_shapes_cityscapes(args.out_dir, args.num_train, args.num_val, args.width,
                                    args.height, args.seed, not args.no_label_ids)
    print(f"{args.out_dir}: {len(frames['train'])} train, {len(frames['val'])} val frames")


if __name__ == '__main__':
    main()
