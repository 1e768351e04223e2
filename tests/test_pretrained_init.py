"""Every way mmengine loads weights keeps them, in every module of ours that initialises.

``init_cfg`` as a dict, as a list (alone or after other inits), with ``prefix``
into a whole-model checkpoint, and the Runner's ``load_from``: afterwards the
parameters and buffers are the checkpoint's, RedNet's ``bn3`` (zeroed by its
own init) and the mask head's ``conv_logits``/``upsample`` (re-initialised by
mmdet's ``init_weights``) included.
"""
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel, BaseModule
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mmrednet.models import (
    Involution,
    InvolutionFCNMaskHead,
    InvolutionFPN,
    InvolutionRPNHead,
    RedNet,
)


def _rednet(init_cfg=None):
    return RedNet(26, base_channels=16, stem_channels=32, init_cfg=init_cfg)


def _involution(init_cfg=None):
    return Involution(16, kernel_size=3, init_cfg=init_cfg)


def _fpn(init_cfg=None):
    return InvolutionFPN(in_channels=[16, 32], out_channels=16, num_outs=2,
                         involution_cfg=dict(kernel_size=3), init_cfg=init_cfg)


def _rpn_head(init_cfg=None):
    kwargs = {} if init_cfg is None else dict(init_cfg=init_cfg)
    return InvolutionRPNHead(16, feat_channels=16, involution_cfg=dict(kernel_size=3), **kwargs)


def _mask_head():
    # mmdet's FCNMaskHead takes no init_cfg: it is loaded by a module above it.
    return InvolutionFCNMaskHead(num_convs=2, in_channels=16, conv_out_channels=16,
                                 num_classes=3, involution_cfg=dict(kernel_size=3))


MODULES = dict(rednet=_rednet, involution=_involution, fpn=_fpn, rpn_head=_rpn_head)
# What the default init of each sets that a checkpoint must win over.
DEFAULT_INIT = [dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]


@pytest.fixture(autouse=True)
def _mmdet_scope():
    init_default_scope('mmdet')  # the heads build mmdet's anchor generator and losses


def _trained(build):
    """A module whose every float entry is random and non-zero, as trained weights are."""
    module = build()
    with torch.no_grad():
        for value in module.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5)
    return module.state_dict()


def _assert_loaded(module, expected):
    got = module.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), f'{key} is not the checkpoint\'s after init_weights'


def _forms(tmp_path, state):
    """``init_cfg`` -> the Pretrained forms mmengine accepts, over the same weights."""
    bare = str(tmp_path / 'bare.pth')
    torch.save(dict(state_dict=state, meta=dict()), bare)
    whole = str(tmp_path / 'whole.pth')  # a detector's checkpoint, the module inside
    torch.save(dict(state_dict={f'neck.part.{k}': v for k, v in state.items()},
                    meta=dict()), whole)
    return {
        'dict': dict(type='Pretrained', checkpoint=bare),
        'list': [dict(type='Pretrained', checkpoint=bare)],
        'list after other inits': [*DEFAULT_INIT, dict(type='Pretrained', checkpoint=bare)],
        'list before other inits': [dict(type='Pretrained', checkpoint=bare), *DEFAULT_INIT],
        'prefix': dict(type='Pretrained', checkpoint=whole, prefix='neck.part.'),
        'prefix in a list': [dict(type='Pretrained', checkpoint=whole, prefix='neck.part.')],
    }


@pytest.mark.parametrize('name', MODULES)
def test_every_pretrained_form_keeps_the_checkpoint(name, tmp_path):
    build = MODULES[name]
    state = _trained(build)
    for form, init_cfg in _forms(tmp_path, state).items():
        module = build(init_cfg)
        module.init_weights()
        try:
            _assert_loaded(module, state)
        except AssertionError as error:
            raise AssertionError(f'{name}, init_cfg as {form}: {error}') from None


class _Parent(BaseModule):
    """A detector, say: the module inside, the Pretrained init_cfg on the parent."""

    def __init__(self, part, init_cfg):
        super().__init__(init_cfg)
        self.part = part


@pytest.mark.parametrize('name', [*MODULES, 'mask_head'])
def test_a_pretrained_parent_keeps_the_checkpoint(name, tmp_path):
    build = MODULES.get(name, _mask_head)
    state = _trained(build)
    whole = str(tmp_path / 'whole.pth')
    torch.save(dict(state_dict={f'model.part.{k}': v for k, v in state.items()}, meta=dict()),
               whole)
    for init_cfg in (dict(type='Pretrained', checkpoint=whole, prefix='model.'),
                     [*DEFAULT_INIT, dict(type='Pretrained', checkpoint=whole, prefix='model.')]):
        parent = _Parent(build(), init_cfg)
        parent.init_weights()
        _assert_loaded(parent.part, state)


def test_rednet_default_init_still_zeroes_the_residual_norms():
    model = _rednet()
    model.init_weights()
    blocks = [block for layer in (model.layer1, model.layer2, model.layer3, model.layer4)
              for block in layer]
    assert len(blocks) == 8
    assert all(not block.bn3.weight.any() and not block.bn3.bias.any() for block in blocks)
    assert all(block.bn2.weight.eq(1).all() for block in blocks)
    model = RedNet(26, base_channels=16, stem_channels=32, zero_init_residual=False)
    model.init_weights()
    assert all(block.bn3.weight.eq(1).all() for block in model.layer1)


class _Backbone(BaseModel):
    """The smallest model the Runner trains: a RedNet and a loss on its outputs."""

    def __init__(self):
        super().__init__()
        self.backbone = _rednet()

    def forward(self, inputs, data_samples=None, mode='tensor'):
        outs = self.backbone(inputs)
        return dict(loss=sum(o.mean() for o in outs)) if mode == 'loss' else outs


class _WeightsAtStart(Hook):
    """The model's state when training starts: after init_weights and load_from."""

    def before_train(self, runner):
        # On the CPU: the Runner puts the model on the GPU where there is one.
        self.state = {k: v.detach().cpu().clone() for k, v in runner.model.state_dict().items()}


def test_runner_load_from_keeps_the_checkpoint(tmp_path):
    model = _Backbone()
    state = {f'backbone.{k}': v for k, v in _trained(_rednet).items()}
    checkpoint = str(tmp_path / 'trained.pth')
    torch.save(dict(state_dict=state, meta=dict()), checkpoint)
    hook = _WeightsAtStart()
    runner = Runner(model=model, work_dir=str(tmp_path / 'work'), load_from=checkpoint,
                    train_dataloader=dict(dataset=[dict(inputs=torch.randn(3, 64, 64))] * 2,
                                          sampler=dict(type='DefaultSampler', shuffle=False),
                                          collate_fn=dict(type='default_collate'),
                                          batch_size=2),
                    train_cfg=dict(by_epoch=False, max_iters=1),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.0)),
                    default_hooks=dict(checkpoint=None), custom_hooks=[hook],
                    default_scope='mmdet', log_level='WARNING')
    runner.train()
    assert hook.state.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(hook.state[key], value), key
