"""Write the model-zoo pages from the metafiles (see mmrednet.analysis.model_zoo).

Renders ``configs/rednet/README.md``, ``docs/model_zoo.md`` and the model-zoo
summary of ``README.md`` from ``configs/rednet/metafile*.yml``.

Examples:
    python tools/misc/generate_model_zoo.py           # rewrite the pages
    python tools/misc/generate_model_zoo.py --check   # exit 1 if a page is stale (CI)
"""
import argparse
import os.path as osp
import sys

from mmrednet.analysis.model_zoo import sync_pages

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 when a page differs from the metafiles')
    parser.add_argument('--root', default=ROOT, help='repository root (default: this checkout)')
    args = parser.parse_args(argv)
    stale = sync_pages(args.root, write=not args.check)
    if args.check and stale:
        print(f"stale: {', '.join(stale)}; run python tools/misc/generate_model_zoo.py "
              'after editing the metafiles', file=sys.stderr)
        return 1
    for path in stale:
        print(f'wrote {path}')
    if not stale:
        print('model-zoo pages are up to date')
    return 0


if __name__ == '__main__':
    sys.exit(main())
