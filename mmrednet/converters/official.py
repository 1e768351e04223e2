"""Map state dicts of the original code (github.com/d-li14/involution) to mmrednet's.

Three layouts come out of the original repository:

* ``imagenet``: mmcls 0.x classifiers, ``backbone.*`` plus ``head.fc.*`` (also
  what :mod:`mmrednet.converters.paddle` makes of PaddleClas's ``.pdparams``).
  By default the result is a bare backbone state dict (no prefix), which a
  backbone's ``init_cfg=dict(type='Pretrained', checkpoint=...)`` loads, and
  which ``RedNet(depth, stem_kernel=3)`` loads strictly; the classifier is
  dropped. With ``with_head`` it is the whole classifier in mmpretrain's
  ``ImageClassifier`` keys (``backbone.*``, ``head.fc.*``).
* ``detector``: mmdet 2.x whole models (``backbone``, ``neck``, ``rpn_head``,
  ``roi_head``, ``bbox_head``). mmrednet's modules keep the official module
  names and mmdet 3.x kept 2.x's names for FPN, RPN, RetinaNet and the RoI
  heads, so every key maps to itself; anything else is reported.
* ``segmentor``: mmseg 0.x whole models (``backbone``, ``neck``,
  ``decode_head``, ``auxiliary_head``), likewise unchanged in mmseg 1.x.

Keys that fit none of these are returned in the report, never silently dropped.
"""
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..models.backbones.rednet import RedNet
from ..utils.checkpoint_safety import load_mmengine_checkpoint
from .paddle import is_pickle, load_pdparams, paddle_to_official

# Top-level module names of each layout's whole models.
_MODEL_PREFIXES = {
    'detector': ('backbone.', 'neck.', 'rpn_head.', 'roi_head.', 'bbox_head.'),
    'segmentor': ('backbone.', 'neck.', 'decode_head.', 'auxiliary_head.'),
}
_STEM_SPAN = 'stem.1.conv2.conv.'  # the stem involution's span conv (K*K*G outputs)
# Keys of a RedNet backbone in the official layout (the module names of the original
# repository, github.com/d-li14/involution).
_REDNET_KEY = re.compile(
    r'^(stem\.[0-4]\.|layer[1-4]\.\d+\.(conv[1-3]|bn[1-3]|downsample\.[01])[.])')
# The ImageNet classifier of mmcls 0.x and of mmpretrain: LinearClsHead's ``fc``.
_HEAD_KEYS = ('head.fc.weight', 'head.fc.bias')
# torch.save's legacy (pre-zip) format starts with a protocol-2 pickle of this number.
_TORCH_LEGACY_MAGIC = b'\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19'


@dataclass
class ConversionReport:
    """What :func:`convert_state_dict` did with every source key."""
    layout: str
    mapped: int = 0
    dropped: Dict[str, str] = field(default_factory=dict)  # key -> why (expected)
    unmapped: List[str] = field(default_factory=list)  # keys it does not know
    notes: List[str] = field(default_factory=list)

    def lines(self) -> List[str]:
        out = [f'layout: {self.layout}; {self.mapped} keys mapped']
        out += [f'dropped {k}: {why}' for k, why in self.dropped.items()]
        out += [f'could not map {k}' for k in self.unmapped]
        return out + self.notes


def detect_layout(state_dict: Dict[str, Tensor]) -> str:
    """``imagenet``, ``detector`` or ``segmentor`` from the key prefixes."""
    keys = list(state_dict)
    if any(k.startswith(('decode_head.', 'auxiliary_head.')) for k in keys):
        return 'segmentor'
    if any(k.startswith(('neck.', 'rpn_head.', 'roi_head.', 'bbox_head.')) for k in keys):
        return 'detector'
    if any(k.startswith('head.') for k in keys) or all(k.startswith('backbone.') for k in keys):
        return 'imagenet'
    raise ValueError('unrecognised checkpoint: expected mmcls (backbone.*, head.*), mmdet or '
                     'mmseg (backbone.*, neck.*, ...*_head.*) keys, got e.g. '
                     f'{keys[:5]}')


def expand_stem_kernel(weight: Tensor, bias: Tensor, kernel_from: int,
                       kernel_to: int) -> Tuple[Tensor, Tensor]:
    """Embed a KxK stem involution's span conv in a larger K' x K' one, exactly.

    The span conv's outputs are ``(G, K, K)`` kernel taps. Placing the K x K taps
    at the centre of a K' x K' grid and giving the outer taps zero weight and
    zero bias yields, for every input, the K' x K' kernel that is the K x K one
    padded with zeros: the larger involution computes exactly what the smaller
    one did, and its outer taps are free to learn.

    Args:
        weight (Tensor): ``(G*K*K, C_r, 1, 1)`` span weight.
        bias (Tensor): ``(G*K*K,)`` span bias.
        kernel_from (int): K.
        kernel_to (int): K' (odd, >= K).

    Returns:
        tuple[Tensor, Tensor]: ``(G*K'*K', C_r, 1, 1)`` weight and ``(G*K'*K',)`` bias.
    """
    if kernel_to < kernel_from or (kernel_to - kernel_from) % 2:
        raise ValueError(f'cannot embed a {kernel_from}x{kernel_from} stem kernel in '
                         f'{kernel_to}x{kernel_to}')
    taps = kernel_from**2
    if weight.shape[0] % taps:
        raise ValueError(f'stem span has {weight.shape[0]} outputs, not a multiple of {taps}')
    groups, off = weight.shape[0] // taps, (kernel_to - kernel_from) // 2
    inner = slice(off, off + kernel_from)
    new_w = weight.new_zeros(groups, kernel_to, kernel_to, *weight.shape[1:])
    new_w[:, inner, inner] = weight.view(groups, kernel_from, kernel_from, *weight.shape[1:])
    new_b = bias.new_zeros(groups, kernel_to, kernel_to)
    new_b[:, inner, inner] = bias.view(groups, kernel_from, kernel_from)
    return new_w.reshape(groups * kernel_to**2, *weight.shape[1:]), new_b.flatten()


def stem_kernel_of(state_dict: Dict[str, Tensor], prefix: str = '') -> Optional[int]:
    """The stem involution's K, from its span bias (G = stem half-width / 16)."""
    bias, reduce = state_dict.get(prefix + _STEM_SPAN + 'bias'), state_dict.get(
        prefix + 'stem.1.conv1.conv.weight')
    if bias is None or reduce is None:
        return None
    groups = reduce.shape[1] // 16
    k = round((bias.numel() / groups)**0.5)
    return k if k * k * groups == bias.numel() else None


def rednet_depth(state_dict: Dict[str, Tensor], prefix: str = '') -> int:
    """The depth of the RedNet whose keys (official names after ``prefix``) ``state_dict`` has.

    Raises:
        ValueError: No RedNet stem involution (a file of another model), or
            stage block counts that no RedNet depth has.
    """
    if prefix + _STEM_SPAN + 'weight' not in state_dict:
        raise ValueError(f'not a RedNet checkpoint: it has no stem involution '
                         f'({prefix}{_STEM_SPAN}weight); its keys start with '
                         f'{list(state_dict)[:4]}')
    blocks = []
    for stage in range(1, 5):
        stage_prefix = f'{prefix}layer{stage}.'
        ids = {k[len(stage_prefix):].split('.')[0] for k in state_dict
               if k.startswith(stage_prefix)}
        blocks.append(len(ids))
    for depth, arch in RedNet.arch_settings.items():
        if tuple(blocks) == arch:
            return depth
    known = ', '.join(f'{d}: {a}' for d, a in RedNet.arch_settings.items())
    raise ValueError(f'cannot tell the RedNet depth: its stages have {tuple(blocks)} blocks, '
                     f'which no RedNet depth has ({known})')


def convert_state_dict(state_dict: Dict[str, Tensor], layout: Optional[str] = None,
                       stem_kernel: Optional[int] = None, with_head: bool = False
                       ) -> Tuple[Dict[str, Tensor], ConversionReport]:
    """Convert an official state dict; see the module docstring for the layouts.

    Args:
        state_dict (dict[str, Tensor]): The source ``state_dict``.
        layout (str, optional): Force ``imagenet``, ``detector`` or ``segmentor``;
            detected from the keys by default.
        stem_kernel (int, optional): Embed the stem involution in a kernel of
            this size (:func:`expand_stem_kernel`), e.g. 7 to use the ImageNet
            weights (K=3 stem) in the detection/segmentation RedNets (K=7).
        with_head (bool): ``imagenet`` layout only: keep the classifier and
            write mmpretrain ``ImageClassifier`` keys (``backbone.*``,
            ``head.fc.*``) instead of a bare backbone.

    Returns:
        tuple[dict, ConversionReport]: The converted state dict and the report.
    """
    layout = layout or detect_layout(state_dict)
    if layout not in ('imagenet', 'detector', 'segmentor'):
        raise ValueError(f'unknown layout {layout!r}')
    if with_head and layout != 'imagenet':
        raise ValueError(f'--with-head applies to ImageNet classifiers; this is a {layout}, '
                         'which is converted whole anyway')
    report = ConversionReport(layout)
    out: Dict[str, Tensor] = {}
    for key, value in state_dict.items():
        src = key
        if key.startswith('module.'):  # saved from a (Distributed)DataParallel wrapper
            key = key[len('module.'):]
        if layout == 'imagenet':
            if key in _HEAD_KEYS and with_head:
                out[key] = value
                report.mapped += 1
                continue
            if key.startswith('head.'):
                report.dropped[src] = 'ImageNet classifier, not part of the backbone'
                continue
            inner = key[len('backbone.'):] if key.startswith('backbone.') else key
            if not _REDNET_KEY.match(inner):
                report.unmapped.append(src)
                continue
            key = 'backbone.' + inner if with_head else inner
        elif not key.startswith(_MODEL_PREFIXES[layout]):
            report.unmapped.append(src)
            continue
        out[key] = value
        report.mapped += 1
    if with_head and any(k not in out for k in _HEAD_KEYS):
        raise ValueError('--with-head: the checkpoint has no classifier '
                         f'({" and ".join(_HEAD_KEYS)}); convert the backbone without it')

    if stem_kernel is not None:
        prefix = '' if layout == 'imagenet' and not with_head else 'backbone.'
        current = stem_kernel_of(out, prefix)
        if current is None:
            raise ValueError('--stem-kernel: the checkpoint has no RedNet stem involution')
        if current != stem_kernel:
            w, b = (prefix + _STEM_SPAN + n for n in ('weight', 'bias'))
            out[w], out[b] = expand_stem_kernel(out[w], out[b], current, stem_kernel)
            report.notes.append(f'stem involution embedded from {current}x{current} in '
                                f'{stem_kernel}x{stem_kernel} (zero outer taps: same outputs)')
    return out, report


def source_format(path: str) -> str:
    """``'torch'`` (zip or legacy ``torch.save``) or ``'paddle'`` (a pickle), by content.

    Raises:
        ValueError: An empty, truncated or unknown file.
    """
    with open(path, 'rb') as f:
        head = f.read(len(_TORCH_LEGACY_MAGIC))
    if head.startswith(b'PK\x03\x04'):
        if not zipfile.is_zipfile(path):
            raise ValueError(f'{path}: truncated or corrupt PyTorch checkpoint (a zip archive '
                             'without its central directory)')
        return 'torch'
    if head == _TORCH_LEGACY_MAGIC:
        return 'torch'
    if is_pickle(head):
        return 'paddle'
    what = 'an empty file' if not head else f'starts with {head[:8]!r}'
    raise ValueError(f'{path}: neither a PyTorch checkpoint (zip or legacy torch.save) nor a '
                     f'Paddle .pdparams (pickle): {what}')


def load_source(path: str, unsafe: bool = False) -> Tuple[Dict[str, Tensor], dict]:
    """``(state_dict, meta)`` of an official PyTorch checkpoint or a PaddleClas ``.pdparams``.

    The format is told from the content (:func:`source_format`), not the name.
    ``.pdparams`` come back in the official ImageNet layout
    (:func:`~mmrednet.converters.paddle_to_official`), with
    ``meta['source_format'] == 'paddle'``.
    """
    if source_format(path) == 'paddle':
        return paddle_to_official(load_pdparams(path)), dict(source_format='paddle')
    try:
        if unsafe:
            ckpt = torch.load(path, map_location='cpu', weights_only=False)
        else:  # a checkpoint of our own pretraining is an mmengine one (message hub, numpy)
            ckpt = load_mmengine_checkpoint(torch.load, path, map_location='cpu',
                                            weights_only=True)
    except Exception as err:  # the unpickler's errors have no common type
        if unsafe:
            raise
        raise RuntimeError(f'{path} holds objects that torch.load(weights_only=True) refuses '
                           f'({type(err).__name__}: {str(err).splitlines()[0]}); if you trust '
                           'the file, rerun with --unsafe-load') from err
    if isinstance(ckpt, dict) and isinstance(ckpt.get('state_dict'), dict):
        return ckpt['state_dict'], dict(ckpt.get('meta') or {}, source_format='torch')
    if isinstance(ckpt, dict) and all(isinstance(v, Tensor) for v in ckpt.values()):
        return ckpt, dict(source_format='torch')
    raise ValueError(f'{path}: neither a state dict nor a checkpoint with a '
                     'state_dict')
