"""Distributed training on CPU (gloo) through mmengine's Runner."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` (and the process group) for a launcher run without CUDA.

    mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``, which a
    CPU-only torch cannot do, and its default DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``, which DDP refuses for CPU modules. Without CUDA
    this starts the gloo process group itself (the Runner then sees it is
    already initialised) and asks for a DDP wrapper without device ids. With
    CUDA, or with ``launcher='none'``, it changes nothing.

    Args:
        cfg (Config): The config the Runner will be built from (edited in place).
        launcher (str): ``none``, ``pytorch``, ``slurm`` or ``mpi``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise RuntimeError(f'--launcher {launcher} without CUDA is not supported; '
                           'use torchrun (tools/dist_train.sh) with --launcher pytorch')
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))
    wrapper = dict(type='MMDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
