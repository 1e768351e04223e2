"""RedNet's layouts: one conversion at the stem, one per returned map, and which consumers
accept channels-last maps (``channels_last_outputs=True``) with the same results."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from torch import nn

from mmrednet.models import Involution, RedNet
from mmrednet.models.layers import memory_format

from .det_helpers import ROOT

CL = torch.channels_last


def _layout(t: torch.Tensor) -> str:
    if t.is_contiguous(memory_format=CL):
        return 'channels_last'
    return 'nchw' if t.is_contiguous() else 'other'


def _count_copies(monkeypatch) -> list:
    """Record the layout conversions of ``to_memory_format`` (forward and backward)."""
    copies = []
    real = memory_format._copy

    def counting(t, fmt):
        if not t.is_contiguous(memory_format=fmt):
            copies.append(tuple(t.shape))
        return real(t, fmt)

    monkeypatch.setattr(memory_format, '_copy', counting)
    return copies


def _watch_layouts(model: nn.Module) -> list:
    """(module name, what, layout) of the inputs, outputs and output gradients of every
    convolution, norm, pool and involution inside ``model``."""
    seen = []
    kinds = (nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.MaxPool2d, Involution)

    def hook(name):
        def record(module, args, out):
            seen.append((name, 'input', _layout(args[0])))
            seen.append((name, 'output', _layout(out)))
            if out.requires_grad:
                out.register_hook(lambda g: seen.append((name, 'grad', _layout(g))))
        return record

    for name, module in model.named_modules():
        if isinstance(module, kinds):
            module.register_forward_hook(hook(name))
    return seen


@pytest.mark.parametrize('channels_last_outputs', [False, True])
def test_channels_last_inside_converts_at_the_stem_and_once_per_returned_map(
        monkeypatch, channels_last_outputs):
    """Every layer of the stages reads, writes and gets its gradient channels-last; the only
    copies are the image's and, with NCHW outputs, one per returned map each way."""
    torch.manual_seed(0)
    model = RedNet(26, base_channels=16, stem_channels=32, channels_last=True,
                   channels_last_outputs=channels_last_outputs)
    seen = _watch_layouts(model)
    copies = _count_copies(monkeypatch)
    x = torch.randn(2, 3, 64, 64)
    outs = model(x)
    assert len(copies) == 1 + (0 if channels_last_outputs else 4)
    sum(o.square().mean() for o in outs).backward()
    # Backward recomputes the stem (recompute_stem), the image's conversion with it.
    assert len(copies) == 2 + (0 if channels_last_outputs else 8)
    assert copies.count((2, 3, 64, 64)) == 2
    assert len(seen) > 200 and {layout for *_, layout in seen} == {'channels_last'}, \
        sorted({entry for entry in seen if entry[2] != 'channels_last'})
    assert all(_layout(o) == ('channels_last' if channels_last_outputs else 'nchw')
               for o in outs)


def test_channels_last_outputs_have_the_values_and_gradients_of_nchw_ones():
    torch.manual_seed(0)
    model = RedNet(26, base_channels=16, stem_channels=32, channels_last=True).double()
    x = torch.randn(2, 3, 40, 36, dtype=torch.double)
    runs = []
    for channels_last_outputs in (False, True):
        model.channels_last_outputs = channels_last_outputs
        model.zero_grad()
        outs = model(x)
        sum((o * torch.arange(o.shape[1], dtype=o.dtype).view(-1, 1, 1)).square().mean()
            for o in outs).backward()
        runs.append((outs, [p.grad for p in model.parameters()]))
    for nchw, cl in zip(*runs, strict=True):
        torch.testing.assert_close(cl, nchw)


def test_without_channels_last_nothing_is_converted(monkeypatch):
    model = RedNet(26, base_channels=16, stem_channels=32, channels_last=False,
                   channels_last_outputs=True)
    copies = _count_copies(monkeypatch)
    outs = model(torch.randn(1, 3, 64, 64))
    assert not copies and all(o.is_contiguous() for o in outs)


# Consumers of the stage outputs, as the configs here build them. Each: config, scope,
# input (N, H, W), the losses whose values must match.
CONSUMERS = {
    'mmdet FPN + RetinaHead': ('retinanet_rednet50_fpn_1x_coco.py', 'mmdet', (2, 64, 64)),
    'mmdet FPN + RPNHead + RoI head': ('faster-rcnn_rednet50_fpn_1x_coco.py', 'mmdet',
                                       (2, 64, 64)),
    'mmseg FPN + FPNHead': ('fpn_rednet50_4xb2-80k_cityscapes-512x1024.py', 'mmseg',
                            (2, 64, 64)),
    'mmseg UPerHead + FCNHead': ('upernet_rednet50_4xb2-80k_cityscapes-512x1024.py', 'mmseg',
                                 (2, 64, 64)),
    'mmpretrain GlobalAveragePooling + LinearClsHead': (
        'rednet50_64xb32-warmup-coslr-130e_imagenet.py', 'mmpretrain', (2, 64, 64)),
}


def _batch(scope: str, model: nn.Module, shape, dtype=torch.double):
    n, h, w = shape
    torch.manual_seed(1)
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        packed = demo_mm_inputs(batch_size=n, image_shapes=[(3, h, w)] * n,
                                num_items=[3] * n, num_classes=80)
        data = model.data_preprocessor(packed, True)
        return data['inputs'].to(dtype), data['data_samples']
    inputs = torch.randn(n, 3, h, w, dtype=dtype)
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        samples = []
        for _ in range(n):
            sample = SegDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w),
                                                 ori_shape=(h, w)))
            sample.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, h, w)))
            samples.append(sample)
        return inputs, samples
    from mmpretrain.structures import DataSample
    return inputs, [DataSample().set_gt_label(i) for i in range(n)]


def _run(model: nn.Module, inputs, samples, channels_last_outputs: bool):
    """Losses, parameter gradients and the eval-mode head outputs of one layout."""
    model = copy.deepcopy(model)
    model.backbone.channels_last_outputs = channels_last_outputs
    feats = []
    model.backbone.register_forward_hook(lambda m, args, out: feats.append(out))
    torch.manual_seed(2)  # the samplers of the detectors draw
    losses = model(inputs, samples, mode='loss')
    model.parse_losses(losses)[0].backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    model.eval()
    with torch.no_grad():
        outputs = model(inputs, samples, mode='tensor')
    want = 'channels_last' if channels_last_outputs else 'nchw'
    assert all(_layout(f) == want for out in feats for f in out)
    return ({k: [t.detach() for t in _flatten(v)] for k, v in losses.items() if 'loss' in k},
            grads, list(_flatten(outputs)))


def _flatten(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)


def _build(name: str, dtype=torch.double):
    config, scope, shape = CONSUMERS[name]
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'rednet', config))
    cfg.model.backbone.update(depth=26, init_cfg=None, channels_last=True)
    cfg.model.pop('pretrained', None)
    init_default_scope(scope)
    from mmengine.registry import MODELS
    # float64: at these tiny sizes, training-mode BN over a few values and the ReLUs
    # after it turn float32's summation-order differences into visible ones.
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(dtype).train()
    return model, scope, shape


@pytest.mark.parametrize('name', [n for n in CONSUMERS if 'RoI' not in n])
def test_consumers_give_the_same_results_on_channels_last_maps(name):
    model, scope, shape = _build(name)
    inputs, samples = _batch(scope, model, shape)
    nchw = _run(model, inputs, samples, False)
    cl = _run(model, inputs, samples, True)
    assert nchw[0].keys() == cl[0].keys() and nchw[1].keys() == cl[1].keys()
    for got, want in zip(cl, nchw, strict=True):
        torch.testing.assert_close(got, want)


def test_rpn_head_accepts_channels_last_maps_but_mmcv_cpu_roi_align_does_not():
    """Why the maps are NCHW by default: through mmdet's FPN, the RPN head gives the same
    scores on channels-last maps, the RoI extractor (mmcv's CPU RoIAlign, which reads its
    input as NCHW memory) other features."""
    # float32: mmcv's CPU RoIAlign and NMS take no float64.
    model, scope, shape = _build('mmdet FPN + RPNHead + RoI head', torch.float32)
    model.eval()
    inputs, _ = _batch(scope, model, shape, torch.float32)
    feats = {}
    with torch.no_grad():
        for channels_last_outputs in (False, True):
            model.backbone.channels_last_outputs = channels_last_outputs
            feats[channels_last_outputs] = model.extract_feat(inputs)
        assert all(_layout(f) == 'channels_last' for f in feats[True])
        rpn = [model.rpn_head(feats[cl]) for cl in (False, True)]
        torch.testing.assert_close(rpn[1], rpn[0], rtol=1e-4, atol=1e-5)
        rois = torch.tensor([[0, 4., 4., 40., 40.], [1, 10., 0., 60., 30.]])
        extractor = model.roi_head.bbox_roi_extractor
        nchw = extractor(feats[False][:extractor.num_inputs], rois)
        cl = extractor(feats[True][:extractor.num_inputs], rois)
        dense = extractor([f.contiguous() for f in feats[True][:extractor.num_inputs]], rois)
    torch.testing.assert_close(dense, nchw, rtol=1e-4, atol=1e-5)
    assert (cl - nchw).abs().max() > 0.1 * nchw.abs().max()
