"""Train a detector, segmentor or classifier from an mmdet/mmseg/mmpretrain config.

The config's ``default_scope`` (``mmdet``, ``mmseg`` or ``mmpretrain``) decides
which registries build it; this script, with mmengine's Runner, is the same for all.

Examples:
    python tools/train.py configs/rednet/retinanet_rednet50_fpn_1x_coco.py
    GPUS=64 bash tools/slurm_train.sh PARTITION JOB \\
        configs/rednet/rednet50_64xb32-warmup-coslr-130e_imagenet.py work_dirs/rednet50
    python tools/train.py CONFIG --resume                 # latest checkpoint in work_dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_1000.pth
    bash tools/dist_train.sh CONFIG 8                     # 8 processes (torchrun)

Every run gets the hooks of :func:`mmrednet.engine.add_resume_hooks` (shown in
the config dump, each switched off with ``default_hooks.<name>=None``): a run
stopped and resumed ends as a run never stopped, checkpoints survive a kill at
any moment, and SIGTERM/SIGUSR1 save a checkpoint and stop the run (exit status
128 + the signal's number; SIGUSR1 requeues a Slurm job).
"""
import argparse
import logging
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmrednet  # noqa: F401  (lets torch>=2.6 load mmengine checkpoints on resume)
from mmrednet.apis import (
    MissingPretrainedError,
    PaddleClasCheckpointError,
    add_runner_arguments,
    check_pretrained_files,
    load_config,
    parse_runner_args,
    setup_cpu_distributed,
)
from mmrednet.engine import TrainingInterrupted, add_resume_hooks


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train a model from an mmdet/mmseg/mmpretrain config')
    add_runner_arguments(parser)
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (needs CUDA)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or without a path from the '
                        'latest checkpoint in the work dir')
    return parse_runner_args(parser, argv)


def build_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied."""
    cfg = load_config(args)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP is already enabled in the config.', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    add_resume_hooks(cfg)
    return cfg


def loads_checkpoint(cfg: Config) -> bool:
    """Whether the Runner will load weights from a checkpoint (resume or ``load_from``).

    ``--resume`` without a path (what tools/slurm_train.sh passes) starts afresh
    when the work dir has no ``last_checkpoint`` yet.
    """
    if cfg.get('load_from') is not None:
        return True
    return bool(cfg.get('resume', False)) and \
        osp.isfile(osp.join(cfg.work_dir, 'last_checkpoint'))


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = build_config(args)
    if not loads_checkpoint(cfg):
        # A resumed or fine-tuned run overwrites the backbone weights anyway.
        try:
            check_pretrained_files(cfg.model)
        except (MissingPretrainedError, PaddleClasCheckpointError) as err:
            sys.exit(f'error: {err}')
    setup_cpu_distributed(cfg, args.launcher)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    try:
        runner.train()
    except PaddleClasCheckpointError as err:  # raised while the weights are initialised
        sys.exit(f'error: {err}')
    except TrainingInterrupted as stop:  # a checkpoint is written, the Slurm job requeued
        runner.call_hook('after_run')  # logs and visualizer backends closed as after training
        sys.exit(128 + stop.signum)


if __name__ == '__main__':
    main()
