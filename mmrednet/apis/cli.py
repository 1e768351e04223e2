"""The command line that tools/train.py and tools/test.py share, as in mmdet's/mmseg's tools."""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    """``config``, ``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='directory for logs, checkpoints and metrics '
                        '(default: the config\'s work_dir, else work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. model.backbone.init_cfg=None')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (or --local_rank); torchrun
    # sets LOCAL_RANK itself.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_runner_args(parser: argparse.ArgumentParser,
                      argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse, and export ``LOCAL_RANK`` for launchers that only pass ``--local-rank``."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_config(args: argparse.Namespace) -> Config:
    """``args.config`` with ``--launcher``, ``--cfg-options`` and ``--work-dir`` applied."""
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg
