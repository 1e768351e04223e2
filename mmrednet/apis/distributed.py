"""Distributed training on CPU (gloo) through mmengine's Runner."""
import logging
import os
from typing import List

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS

from ..models.layers.memory_format import match_grad_strides
from .config_tree import iter_dicts

# mmcv's names of the BN layers that synchronise statistics across processes;
# torch's SyncBatchNorm (and mmcv's own) only run on GPUs.
SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN')


def sync_bn_to_bn(cfg: Config) -> List[str]:
    """Make every SyncBN of ``cfg.model`` a BN (same parameters and buffers); return their keys.

    torch refuses SyncBN on the CPU in training ("SyncBatchNorm expected input
    tensor to be on GPU or XPU or privateuseone", raised from inside the forward
    pass). mmengine's Runner already reverts SyncBN to BN in a non-distributed
    run; this does the same for a distributed CPU run, where each process then
    normalises with its own batch statistics.
    """
    found = [(key, node) for key, node in iter_dicts(cfg.get('model'), 'model')
             if node.get('type') in SYNC_BN_TYPES]
    for _, norm_cfg in found:
        norm_cfg['type'] = 'BN'
    return [key for key, _ in found]


def setup_cpu_distributed(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` (and the process group) for a launcher run without CUDA.

    mmengine's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``, which a
    CPU-only torch cannot do, and its default DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``, which DDP refuses for CPU modules. Without CUDA
    this starts the gloo process group itself (the Runner then sees it is
    already initialised), asks for a DDP wrapper without device ids (one whose gradients
    match its buckets: ``StrideMatchedDistributedDataParallel``), and turns
    SyncBN into BN with a one-line warning (:func:`sync_bn_to_bn`; a top-level
    ``sync_bn``, the Runner's conversion of every BN after building, is dropped). With CUDA,
    or with ``launcher='none'``, it changes nothing.

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
    reverted = sync_bn_to_bn(cfg)
    if cfg.pop('sync_bn', None):  # the Runner would turn every BN into SyncBN after building
        reverted.append('sync_bn (every BN)')
    if reverted:
        print_log(f'SyncBN needs GPUs (torch refuses it on the CPU): this CPU run of '
                  f'{dist.get_world_size()} processes uses BN, with per-process batch '
                  f'statistics, for {", ".join(reverted)}', logger='current',
                  level=logging.WARNING)
    wrapper = dict(type='StrideMatchedDistributedDataParallel', broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


@MODEL_WRAPPERS.register_module()
class StrideMatchedDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper, with gradients in the strides of DDP's buckets.

    On the CPU, RedNet runs channels-last: weight gradients of its 1x1 convolutions can
    then come with other strides than their parameters (the same element
    order: see :func:`~mmrednet.models.layers.memory_format.match_grad_strides`), and DDP
    warns "Grad strides do not match bucket view strides" at the first step.
    :func:`setup_cpu_distributed` picks this wrapper, which gives those gradients their
    parameters' strides before DDP sees them.

    Args:
        module (nn.Module): The model to wrap.
        **kwargs: mmengine's ``MMDistributedDataParallel`` arguments.
    """

    def __init__(self, module, **kwargs):
        super().__init__(module=match_grad_strides(module), **kwargs)
