"""Fail early, and helpfully, when a config's pretrained weights are missing."""
import os.path as osp

from ..converters.paddleclas_scheme import BASE_URL, PREFIX, URL_ENV, parse_paddleclas_path
from .config_tree import iter_dicts

HOW_TO_GET = f"""\
Either
  * let mmrednet fetch PaddleClas's conversion of the official RedNet-50 weights (downloaded
    once into torch's hub cache, converted on the fly; the zoo configs' default):
      --cfg-options {{key}}.checkpoint='{PREFIX}RedNet50?stem_kernel=7'
    (stem_kernel=7 for the detection/segmentation RedNets; {URL_ENV} names a mirror
    or a local directory holding RedNet50_pretrained.pdparams);
  * convert the file yourself (docs/user_guides/imagenet.md):
      {BASE_URL}/RedNet50_pretrained.pdparams
      python tools/convert_official_checkpoint.py RedNet50_pretrained.pdparams {{path}} \\
          --stem-kernel 7
    (an official PyTorch rednet50.pth converts the same way);
  * pretrain on ImageNet yourself: configs/rednet/rednet50_64xb32-warmup-coslr-130e_imagenet.py,
    then convert the result with the same command;
  * or train the backbone from scratch:
      --cfg-options {{init_key}}=None"""


class MissingPretrainedError(FileNotFoundError):
    """A ``Pretrained`` init_cfg names a local file that does not exist."""


def check_pretrained_files(model_cfg: dict, root_key: str = 'model') -> None:
    """Raise :class:`MissingPretrainedError` for a missing local ``Pretrained`` checkpoint.

    mmengine only opens the file after the runner is built, and then raises a
    bare ``FileNotFoundError``; this check runs before and says how to get the
    weights or how to do without them. ``paddleclas://`` names are checked
    (:class:`~mmrednet.converters.paddleclas_scheme.PaddleClasCheckpointError`
    for an unknown one; the file itself is fetched when the model is
    initialised); other URLs and ``scheme://`` paths are left to mmengine.

    Args:
        model_cfg (dict): The ``model`` field of a config.
        root_key (str): Name of that field, for the ``--cfg-options`` hint.
    """
    for key, init in iter_dicts(model_cfg, root_key):
        if init.get('type') != 'Pretrained' or 'checkpoint' not in init:
            continue
        path = init['checkpoint']
        if isinstance(path, str) and path.startswith(PREFIX):
            parse_paddleclas_path(path)
        if not isinstance(path, str) or '://' in path or osp.isfile(path):
            continue
        # `key` points at the Pretrained dict; inside a list it cannot be set
        # to None on its own, so the hint names the enclosing init_cfg.
        parts = key.split('.')
        while parts and parts[-1] != 'init_cfg':
            parts.pop()
        hint_key = '.'.join(parts) or key
        raise MissingPretrainedError(
            f'{key}.checkpoint = {path!r} does not exist '
            f'(working directory {osp.abspath(".")}).\n'
            + HOW_TO_GET.format(path=path, key=key, init_key=hint_key))
