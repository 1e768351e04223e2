"""Evaluate a checkpoint on a config's test set (mmdet, mmseg or mmpretrain) with mmengine's Runner.

Examples:
    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --show-dir vis/      # prediction images
    python tools/test.py CONFIG CHECKPOINT --out results.pkl    # raw predictions
    python tools/test.py SEG_CONFIG CHECKPOINT --tta            # multi-scale + flip
    python tools/test.py CLS_CONFIG CHECKPOINT --tta            # flip (mmpretrain's default)
    python tools/test.py CONFIG --backend onnxruntime --onnx model.onnx  # an exported model
    python tools/test.py CONFIG --backend aoti --package model.pt2  # an AOTInductor package
    (a model exported without --dynamic takes batch 1: the test then runs with batch_size=1)
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import copy
import os.path as osp
import sys

from mmengine.config import Config, ConfigDict
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmrednet  # noqa: F401  (lets torch>=2.6 load mmengine checkpoints)
from mmrednet.apis import (
    PaddleClasCheckpointError,
    add_runner_arguments,
    load_config,
    parse_runner_args,
    setup_cpu_distributed,
)
from mmrednet.deployment import BACKENDS, GraphInputError, use_deployment


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test a model from an mmdet/mmseg/mmpretrain config')
    add_runner_arguments(parser)
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint file (the pytorch backend; the deployed backends '
                        'read their exported file: ' + ', '.join(
                            f'{b.name} --{b.option}' for b in BACKENDS.values()) + ')')
    parser.add_argument('--backend', choices=['pytorch', *BACKENDS], default='pytorch',
                        help='run the network in PyTorch, the exported --onnx model in '
                        'onnxruntime, or the --package compiled by AOTInductor (same data, '
                        'post-processing and metrics)')
    for backend in BACKENDS.values():
        parser.add_argument(f'--{backend.option}', help=f'{backend.suffix} file written by '
                            f'tools/deployment/{backend.exporter}, for --backend {backend.name}')
    parser.add_argument('--out', help='write the predictions: a .pkl file (any task), or '
                        'for mmseg a directory of result images for offline evaluation')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save images with predictions drawn to this directory')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: the config\'s tta_model and tta_pipeline '
                        '(multi-scale + flip for mmseg); for mmpretrain configs without them, '
                        'flip averaging as mmpretrain\'s own test tool does')
    args = parse_runner_args(parser, argv)
    if args.backend == 'pytorch' and args.checkpoint is None:  # deployed backends: below
        parser.error('the pytorch backend needs a checkpoint (and no --onnx or --package)')
    for backend in BACKENDS.values():
        given = getattr(args, backend.option) is not None
        if args.backend == backend.name and (not given or args.checkpoint is not None):
            parser.error(f'--backend {backend.name} needs --{backend.option} {backend.example} '
                         f'and no checkpoint (the weights are in the {backend.suffix})')
        if given and args.backend != backend.name:
            parser.error(f'--{backend.option} is for --backend {backend.name}')
    return args


def _enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError('--show/--show-dir need default_hooks.visualization in the config')
    if cfg.default_scope == 'mmpretrain':
        # mmpretrain's VisualizationHook: `enable`, and every `interval`-th sample.
        hook.update(enable=True, interval=1, show=args.show, wait_time=args.wait_time)
        if args.show_dir:
            hook['out_dir'] = osp.abspath(args.show_dir)
        return
    hook['draw'] = True
    if args.show:
        hook['show'], hook['wait_time'] = True, args.wait_time
    if args.show_dir:
        show_dir = osp.abspath(args.show_dir)
        if cfg.default_scope == 'mmdet':
            # DetVisualizationHook joins this to work_dir/timestamp unless absolute.
            hook['test_out_dir'] = show_dir
        else:
            # mmseg's hook draws every `interval`-th image into the visualizer's dir.
            hook['interval'] = 1
            cfg.visualizer['save_dir'] = show_dir


def _add_dump(cfg: Config, out: str) -> None:
    if out.endswith(('.pkl', '.pickle')):
        dump_type = 'DumpDetResults' if cfg.default_scope == 'mmdet' else 'DumpResults'
        dump = ConfigDict(type=dump_type, out_file_path=out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = ([*evaluator, dump] if isinstance(evaluator, (list, tuple))
                              else [evaluator, dump])
    elif cfg.default_scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    else:
        raise ValueError(f'--out must end in .pkl or .pickle (a directory of result images '
                         f'is for mmseg configs only), got {out!r}')


def _add_flip_tta(cfg: Config) -> None:
    """mmpretrain's default TTA: average the scores of the image and its mirror image."""
    cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pipeline[-1] = dict(type='TestTimeAug', transforms=[
        [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)], [pipeline[-1]]])
    cfg.tta_pipeline = pipeline


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied."""
    cfg = load_config(args)
    if args.backend == 'pytorch':
        cfg.load_from = args.checkpoint
    else:  # the config's model, its network read from the exported file
        use_deployment(cfg, getattr(args, BACKENDS[args.backend].option), args.backend)
    if args.show or args.show_dir:
        _enable_visualization(cfg, args)
    if args.tta:
        if cfg.default_scope == 'mmpretrain' and 'tta_model' not in cfg \
                and 'tta_pipeline' not in cfg:
            _add_flip_tta(cfg)
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise RuntimeError('--tta needs tta_model and tta_pipeline in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out is not None:
        _add_dump(cfg, args.out)
    return cfg


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = build_config(args)
    setup_cpu_distributed(cfg, args.launcher)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    try:
        return runner.test()
    except PaddleClasCheckpointError as err:  # CHECKPOINT is paddleclas://... and the fetch failed
        sys.exit(f'error: {err}')
    except GraphInputError as err:  # test images the deployed graph does not take
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
