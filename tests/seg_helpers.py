"""Helpers of the segmentation tests: tiny configs."""
import os.path as osp

from mmengine import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def config(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, 'configs', name))


def shrink_for_cpu(cfg: Config, data_root: str, work_dir: str, crop=(64, 128),
                   scale=(128, 64)) -> Config:
    """Make a Cityscapes config run one tiny iteration on CPU.

    Only the data, the schedule length and the side effects change; the model
    stays as configured (SyncBN included: the Runner reverts it off
    distributed runs, which the tests check).
    """
    cfg.work_dir = work_dir
    cfg.model.backbone.init_cfg = None  # no ImageNet checkpoint here
    cfg.model.data_preprocessor.size = crop
    for step in cfg.train_pipeline:
        if step['type'] == 'RandomResize':
            step['scale'] = scale
        elif step['type'] == 'RandomCrop':
            step['crop_size'] = crop
    for step in cfg.test_pipeline:
        if step['type'] == 'Resize':
            step['scale'] = scale
    for loader, pipeline in ((cfg.train_dataloader, cfg.train_pipeline),
                             (cfg.val_dataloader, cfg.test_pipeline),
                             (cfg.test_dataloader, cfg.test_pipeline)):
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.data_root = data_root
        loader.dataset.pipeline = pipeline
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1000)
    # No 200 MB "last" checkpoint, no logging noise between Runners.
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 1
    cfg.visualizer.name = f'visualizer_{osp.basename(work_dir)}'
    cfg.log_level = 'WARNING'
    return cfg
