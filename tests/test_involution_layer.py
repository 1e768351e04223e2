"""The Involution layer: registry, ConvModule drop-in, grids, the fused op, regeneration, errors."""
import pytest
import torch
from mmcv.cnn import ConvModule, build_conv_layer

from mmrednet.models import Involution, Involution1d
from mmrednet.ops import involution, involution_reference

from .op_recorder import OpRecorder


def _layer_reference(layer, x):
    """The layer computed with the reference op, straight from SPEC §2."""
    pooled = x if layer.avgpool is None else layer.avgpool(x)
    span = layer.conv2(layer.conv1(pooled))
    kernel = span.view(span.shape[0], layer.groups, *layer.kernel_size, *span.shape[2:])
    return involution_reference(x, kernel, layer.stride, layer.padding, layer.dilation)


def test_build_conv_layer_and_convmodule_drop_in():
    layer = build_conv_layer(dict(type='involution'), 32, 32, kernel_size=7, stride=2)
    assert isinstance(layer, Involution) and layer.stride == (2, 2)
    module = ConvModule(32, 32, 7, padding=3, conv_cfg=dict(type='involution'))
    module.init_weights()
    x = torch.randn(2, 32, 9, 9)
    assert module(x).shape == (2, 32, 9, 9)
    assert module.conv.bias is not None  # ConvModule asks for a bias without a norm


@pytest.mark.parametrize('size', [(7, 7), (8, 9), (1, 1), (2, 3), (13, 6), (5, 1)])
@pytest.mark.parametrize('stride', [1, 2, 3])
def test_kernel_grid_equals_output_grid_for_every_size(size, stride):
    layer = Involution(16, kernel_size=3, stride=stride, group_channels=8).eval()
    x = torch.randn(1, 16, *size)
    out = layer(x)
    assert out.shape[2:] == tuple(-(-s // stride) for s in size)
    torch.testing.assert_close(out, _layer_reference(layer, x))


def test_stride_two_kernel_comes_from_average_pool():
    layer = Involution(16, kernel_size=3, stride=2, group_channels=16).eval()
    x = torch.randn(1, 16, 5, 5)
    pooled = layer.avgpool(x)
    # ceil_mode: the last cell averages the one remaining row/column only.
    torch.testing.assert_close(pooled[0, :, 2, 2], x[0, :, 4, 4])
    torch.testing.assert_close(pooled[0, :, 0, 0], x[0, :, :2, :2].mean(dim=(1, 2)))


def test_layer_matches_reference_and_dilation():
    layer = Involution(32, kernel_size=5, dilation=2, group_channels=8, reduction_ratio=2)
    x = torch.randn(2, 32, 11, 10)
    torch.testing.assert_close(layer(x), _layer_reference(layer, x))


def test_one_dimensional_layer():
    layer = Involution1d(16, kernel_size=5, stride=2, group_channels=4,
                         act_cfg=dict(type='Swish'))
    x = torch.randn(3, 16, 11)
    out = layer(x)
    assert out.shape == (3, 16, 6)
    torch.testing.assert_close(out, _layer_reference(layer, x))
    out.sum().backward()
    assert layer.conv2.conv.weight.grad is not None


def test_state_dict_keys_match_official_layout():
    keys = set(Involution(64, kernel_size=7, stride=2).state_dict())
    assert keys == {
        'conv1.conv.weight', 'conv1.bn.weight', 'conv1.bn.bias', 'conv1.bn.running_mean',
        'conv1.bn.running_var', 'conv1.bn.num_batches_tracked', 'conv2.conv.weight',
        'conv2.conv.bias'
    }


def test_norm_and_activation_options():
    layer = Involution(32, norm_cfg=dict(type='GN', num_groups=4), act_cfg=dict(type='SiLU'))
    assert isinstance(layer.conv1.gn, torch.nn.GroupNorm)
    assert isinstance(layer.conv1.activate, torch.nn.SiLU)


@pytest.mark.parametrize('layer_type,size', [(Involution, (9, 7)), (Involution1d, (11, ))])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('trains', ['all', 'input only', 'branch only'])
def test_regenerated_kernel_gives_identical_gradients(layer_type, size, stride, trains):
    torch.manual_seed(0)
    layer = layer_type(32, kernel_size=5, stride=stride, group_channels=8, bias=True).double()
    if trains == 'input only':
        layer.requires_grad_(False)
    x = torch.randn(2, 32, *size, dtype=torch.double, requires_grad=trains != 'branch only')
    grads = []
    for regenerate in (False, True):
        layer.regenerate_kernel = regenerate
        layer.zero_grad()
        x.grad = None
        layer(x).pow(2).sum().backward()
        grads.append([x.grad] + [p.grad for p in layer.parameters()])
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert sum(g is not None for g in grads[1]) > 0


def _saved_bytes(layer, x):
    """Bytes of distinct storages autograd keeps for ``layer(x)``, beyond input and state."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = layer(x)
    for kept_anyway in (x, *layer.parameters(), *layer.buffers()):  # exist anyway
        storages.pop(kept_anyway.untyped_storage().data_ptr(), None)
    return sum(storages.values()), out


@pytest.mark.parametrize('stride', [1, 2])
def test_regeneration_keeps_nothing_but_the_input(stride):
    layer = Involution(64, kernel_size=7, stride=stride, group_channels=16)
    x = torch.randn(2, 64, 16, 16, requires_grad=True)
    out_pixels = (16 // stride)**2
    reduced_bytes = 2 * 16 * out_pixels * 4  # N x C/r x Ho x Wo floats
    statistics_bytes = 2 * 16 * 4  # BN's batch mean and inverse std
    pooled_bytes = 2 * 64 * out_pixels * 4 if stride > 1 else 0  # the reduce conv's input
    layer.regenerate_kernel = False
    kept_before, _ = _saved_bytes(layer, x)
    # The kernel branch's norm input, statistics and activation output (the
    # fused op's hidden), never the N x G x K*K x Ho x Wo kernel.
    assert kept_before == 2 * reduced_bytes + statistics_bytes + pooled_bytes
    layer.regenerate_kernel = True
    kept_after, out = _saved_bytes(layer, x)
    assert kept_after == 0
    out.sum().backward()  # and backward regenerates what it needs


def _composed(layer, x):
    """The layer as its composition: kernel branch, then the (non-fused) involution op."""
    out = involution(x, layer.generate_kernel(x), layer.stride, layer.padding, layer.dilation)
    return out if layer.bias is None else out + layer.bias.view(-1, *(1, ) * layer._ndim)


def _output_and_grads(layer, x, forward):
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    out = forward(layer, x)
    # Weighted, so that no gradient is a plain sum.
    out.backward(torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out))
    return out.detach(), [x.grad] + [p.grad for p in layer.parameters()]


_CASES = ([(Involution, (11, 10), layout) for layout in ('contiguous', 'channels_last')]
          + [(Involution1d, (13, ), 'contiguous')])


@pytest.mark.parametrize('layer_type,size,layout', _CASES)
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('regenerate', [True, False])
def test_layer_equals_its_composition_with_every_gradient(layer_type, size, layout, stride,
                                                          dilation, regenerate):
    torch.manual_seed(0)
    layer = layer_type(32, kernel_size=5, stride=stride, dilation=dilation, group_channels=8,
                       bias=True, regenerate_kernel=regenerate).double()
    for param in layer.conv1.norm.parameters():  # not the identity: a wrong gradient shows
        param.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 32, *size, dtype=torch.double)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    out, grads = _output_and_grads(layer, x, lambda m, inp: m(inp))
    expected, expected_grads = _output_and_grads(layer, x.contiguous(), _composed)
    torch.testing.assert_close(out, expected)
    names = ['input'] + [name for name, _ in layer.named_parameters()]
    assert 'conv1.bn.weight' in names and 'conv2.conv.bias' in names
    for name, got, want in zip(names, grads, expected_grads, strict=True):
        assert got is not None, name
        torch.testing.assert_close(got, want, msg=lambda m, name=name: f'{name}: {m}')


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('regenerate', [True, False])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_layer_runs_the_fused_op_and_never_writes_the_kernel(stride, regenerate, layout):
    n, c, k, group_channels = 2, 64, 7, 16
    layer = Involution(c, kernel_size=k, stride=stride, group_channels=group_channels,
                       regenerate_kernel=regenerate)
    x = torch.randn(n, c, 12, 12)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    span_channels = c // group_channels * k * k
    kernel_numel = n * span_channels * (12 // stride)**2
    with OpRecorder() as forward:
        out = layer(x)
    with OpRecorder() as backward:
        out.sum().backward()
    assert 'mmrednet::involution_fused' in forward.names()
    assert {'mmrednet::involution_fused_grad_input',
            'mmrednet::involution_fused_grad_span'} <= backward.names()
    for recorder in (forward, backward):
        assert not recorder.names() & {'mmrednet::involution', 'mmrednet::involution_grad_input',
                                       'mmrednet::involution_grad_weight'}
        # No tensor of the kernel's size, and none with its G*K*K channels
        # but the span's own weight and bias (and their gradients).
        for t in recorder.tensors():
            assert t.numel() != kernel_numel, tuple(t.shape)
            assert t.dim() < 3 or t.shape[1] != span_channels or t.shape[0] == span_channels, \
                tuple(t.shape)


def test_running_statistics_updated_once_per_training_forward():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 9, 9, dtype=torch.double)
    layers = []
    for regenerate in (False, True):
        torch.manual_seed(0)
        layer = Involution(32, kernel_size=3, stride=2, group_channels=8,
                           regenerate_kernel=regenerate).double()
        for _ in range(2):
            layer(x.requires_grad_()).sum().backward()
        layers.append(layer)
    assert int(layers[1].conv1.bn.num_batches_tracked) == 2
    for a, b in zip(layers[0].buffers(), layers[1].buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # And the statistics are those of two batches: the composition's.
    torch.manual_seed(0)
    composed = Involution(32, kernel_size=3, stride=2, group_channels=8).double()
    for _ in range(2):
        _composed(composed, x).sum().backward()
    torch.testing.assert_close(composed.conv1.bn.running_mean, layers[1].conv1.bn.running_mean)


@pytest.mark.parametrize('regenerate', [True, False])
def test_bfloat16_autocast_dtype_and_values_as_the_composition(regenerate):
    torch.manual_seed(0)
    layer = Involution(32, kernel_size=7, stride=2, group_channels=16,
                       regenerate_kernel=regenerate)
    x = torch.randn(2, 32, 14, 13)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, grads = _output_and_grads(layer, x, lambda m, inp: m(inp))
        expected, expected_grads = _output_and_grads(layer, x, _composed)
    assert out.dtype == expected.dtype == torch.bfloat16
    # The composition rounds the kernel to bfloat16; the fused op keeps it in float32.
    torch.testing.assert_close(out, expected, rtol=2e-2, atol=2e-2)
    for got, want in zip(grads, expected_grads, strict=True):
        assert got.dtype == want.dtype
        scale = want.abs().max()
        torch.testing.assert_close(got / scale, want / scale, rtol=0, atol=3e-2)


def test_torch_compile_layer():
    layer = Involution(16, kernel_size=3, stride=2, group_channels=8)
    x = torch.randn(2, 16, 9, 9, requires_grad=True)
    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)
    out = compiled(x)
    torch.testing.assert_close(out, layer(x))
    out.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=32, out_channels=64), r'out_channels \(64\) must equal in_channels \(32\)'),
    (dict(in_channels=24, group_channels=16), r'group_channels \(16\) must divide in_channels'),
    (dict(in_channels=32, reduction_ratio=3), r'reduction_ratio \(3\) must divide in_channels'),
    (dict(in_channels=32, kernel_size=4), 'kernel_size must be odd'),
    (dict(in_channels=32, kernel_size=7, padding=1), r'padding must be \(kernel_size - 1\)'),
    (dict(in_channels=32, groups=2), 'groups must be 1'),
    (dict(in_channels=32, stride=0), 'stride and dilation must be >= 1'),
    (dict(in_channels=32, stride=(1, 2)), 'stride must be an int or 2 equal ints'),
])
def test_bad_configuration_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Involution(**kwargs)


def test_bad_input_is_named():
    layer = Involution(32, kernel_size=3)
    with pytest.raises(ValueError, match='input has 16 channels, expected in_channels=32'):
        layer(torch.randn(1, 16, 8, 8))
    with pytest.raises(ValueError, match='input must have 4 dims'):
        layer(torch.randn(32, 8, 8))
    with pytest.raises(ValueError, match=r'spatial size \(0, 4\) must be positive'):
        layer(torch.randn(1, 32, 0, 4))


def test_tiny_input_is_defined():
    layer = Involution(32, kernel_size=7, dilation=4, stride=2).eval()
    x = torch.randn(2, 32, 1, 1)
    out = layer(x)
    assert out.shape == (2, 32, 1, 1)
    torch.testing.assert_close(out, _layer_reference(layer, x))


@pytest.mark.parametrize('stride', [1, 2])
def test_channels_last_input_stays_channels_last(stride):
    # A channels-last model: the 1x1 convolutions write the kernel pixel-major
    # and the op computes in that layout; values and gradients as in NCHW.
    torch.manual_seed(0)
    layer = Involution(32, kernel_size=7, stride=stride, group_channels=16).double()
    x = torch.randn(2, 32, 11, 10, dtype=torch.double, requires_grad=True)
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    outs, grads = [], []
    for inp in (x, x_cl):
        layer.zero_grad()
        out = layer(inp)
        out.pow(2).sum().backward()
        outs.append(out)
        grads.append([inp.grad] + [p.grad for p in layer.parameters()])
    assert outs[1].is_contiguous(memory_format=torch.channels_last)
    assert not outs[1].is_contiguous()
    torch.testing.assert_close(outs[1], outs[0])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a)
