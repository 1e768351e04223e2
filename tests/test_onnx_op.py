"""The involution op, the fused op and the layer in ONNX: exact against PyTorch in
onnxruntime, dynamic shapes."""
import onnx
import pytest
import torch
from torch import nn
from torch.export import Dim

from mmrednet.deployment import GraphMetadata, OnnxRuntimeGraph
from mmrednet.deployment.onnx.export import to_onnx, write_metadata
from mmrednet.models import Involution, Involution1d
from mmrednet.ops import involution, involution_fused

from .helpers import random_problem

TOL = 1e-5  # fp32, absolute


class Op(nn.Module):
    def __init__(self, stride, padding, dilation):
        super().__init__()
        self.geometry = (stride, padding, dilation)

    def forward(self, input, weight):
        return involution(input, weight, *self.geometry)


def _session(proto: onnx.ModelProto, groups) -> OnnxRuntimeGraph:
    write_metadata(GraphMetadata('test', 'test', 'test', groups), proto)
    return OnnxRuntimeGraph(proto.SerializeToString())


def _run_op(proto: onnx.ModelProto, x, w):
    import onnxruntime as ort
    session = ort.InferenceSession(proto.SerializeToString(), providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run(None, {'input': x.numpy(), 'weight': w.numpy()})[0])


def _assert_standard_onnx(proto: onnx.ModelProto) -> None:
    """Only the default ONNX domain: runs in a stock onnxruntime, no custom op library."""
    assert {node.domain for node in proto.graph.node} <= {''}
    assert {opset.domain for opset in proto.opset_import} <= {'', 'ai.onnx'}
    assert not proto.functions


@pytest.mark.parametrize('kernel', [1, 3, 5, 7])
@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('dilation', [1, 2])
def test_op_matches_pytorch_at_two_shapes(kernel, stride, dilation):
    """Exported on one (odd) size, run on another batch and size: dynamic shapes."""
    geometry = dict(kernel=kernel, stride=stride, dilation=dilation, dtype=torch.float32,
                    requires_grad=False, c=8, groups=2)
    x, w, args = random_problem(n=2, size=(9, 11), **geometry)
    batch = Dim('batch', min=1)
    dynamic = ({0: batch, 2: Dim.AUTO, 3: Dim.AUTO}, {0: batch, 4: Dim.AUTO, 5: Dim.AUTO})
    proto = to_onnx(Op(**args), (x, w), ['input', 'weight'], ['output'], dynamic)
    _assert_standard_onnx(proto)
    for n, size in ((2, (9, 11)), (1, (13, 6)), (3, (7, 16))):
        x, w, _ = random_problem(n=n, size=size, **geometry)
        expected = involution(x, w, **args)
        got = _run_op(proto, x, w)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


def test_op_rectangular_kernel_and_padding():
    x = torch.randn(1, 4, 10, 9)
    w = torch.randn(1, 1, 3, 5, 10, 5)  # Kh 3, Kw 5, stride (1, 2), padding (1, 2)
    args = dict(stride=(1, 2), padding=(1, 2), dilation=1)
    proto = to_onnx(Op(**args), (x, w), ['input', 'weight'], ['output'])
    torch.testing.assert_close(_run_op(proto, x, w), involution(x, w, **args), atol=TOL, rtol=0)


def test_one_dimensional_op_at_two_lengths():
    """The 1-D op reaches ONNX folded into the 2-D layout (``_args.canonicalize``)."""
    geometry = dict(kernel=5, stride=2, dilation=1, dtype=torch.float32, requires_grad=False,
                    c=8, groups=4)
    x, w, args = random_problem(n=2, size=(17, ), **geometry)
    batch = Dim('batch', min=1)
    proto = to_onnx(Op(**args), (x, w), ['input', 'weight'], ['output'],
                    ({0: batch, 2: Dim.AUTO}, {0: batch, 3: Dim.AUTO}))
    for n, length in ((2, 17), (1, 30)):
        x, w, _ = random_problem(n=n, size=(length, ), **geometry)
        torch.testing.assert_close(_run_op(proto, x, w), involution(x, w, **args), atol=TOL,
                                   rtol=0)


@pytest.mark.parametrize('layer_cls, stride, shapes', [
    (Involution, 1, [(2, 32, 14, 14), (1, 32, 9, 13)]),
    (Involution, 2, [(2, 32, 14, 14), (1, 32, 9, 13)]),  # odd sizes: ceil grid
    (Involution1d, 2, [(2, 32, 20), (3, 32, 7)]),
])
def test_layer_in_eval_mode(layer_cls, stride, shapes):
    """Kernel branch (conv, BN with running statistics, ReLU, conv) and op, all in ONNX."""
    layer = layer_cls(32, kernel_size=7, stride=stride, group_channels=8)
    layer.train()
    with torch.no_grad():  # give BN non-trivial running statistics
        for _ in range(3):
            layer(torch.randn(*shapes[0]) * 3 + 1)
    layer.eval()
    dims = {0: Dim('batch', min=1), **{d: Dim.AUTO for d in range(2, len(shapes[0]))}}
    proto = to_onnx(layer, (torch.randn(*shapes[0]), ), ['input'], ['output'], (dims, ))
    _assert_standard_onnx(proto)
    session = _session(proto, [('output', 1)])
    for shape in shapes:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = layer(x)
        [[got]] = session(x)
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


class FusedInvolution(nn.Module):
    """An involution layer's kernel branch handing its span to the fused op: pool (stride
    > 1, ceil mode), reduce (1x1 conv, BN, ReLU), then ``involution_fused`` with the span
    conv's weight and bias."""

    def __init__(self, channels=16, kernel=3, stride=1, bias=True, group_channels=8, ndim=2):
        super().__init__()
        conv, norm, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d) if ndim == 2 else
                            (nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d))
        self.kernel, self.stride, hidden = kernel, stride, channels // 4
        self.pool = (pool(stride, stride, ceil_mode=True, count_include_pad=False)
                     if stride > 1 else nn.Identity())
        self.reduce = nn.Sequential(conv(channels, hidden, 1, bias=False), norm(hidden),
                                    nn.ReLU())
        self.span = conv(hidden, channels // group_channels * kernel**ndim, 1, bias=bias)
        with torch.no_grad():  # BN with statistics of its own, not the identity
            self.reduce[1].running_mean.uniform_(-0.5, 0.5)
            self.reduce[1].running_var.uniform_(0.5, 2)

    def forward(self, x):
        return involution_fused(x, self.reduce(self.pool(x)), self.span.weight, self.kernel,
                                self.span.bias, self.stride, (self.kernel - 1) // 2)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('bias', [True, False])
def test_fused_op_is_its_span_conv_and_the_taps(stride, bias):
    """Exported on one (odd) size, run on other batches and sizes; the span is one Conv
    (its bias in it), the rest the involution's standard ops."""
    module = FusedInvolution(stride=stride, bias=bias).eval()
    dims = {0: Dim('batch', min=1), 2: Dim.AUTO, 3: Dim.AUTO}
    proto = to_onnx(module, (torch.randn(2, 16, 9, 11), ), ['input'], ['output'], (dims, ))
    _assert_standard_onnx(proto)
    convs = [node for node in proto.graph.node if node.op_type == 'Conv']
    assert len(convs) == 2 and len(convs[1].input) == (3 if bias else 2)  # reduce, span
    session = _session(proto, [('output', 1)])
    for shape in ((2, 16, 9, 11), (1, 16, 13, 6), (3, 16, 7, 16)):
        x = torch.randn(shape)
        with torch.no_grad():
            expected = module(x)
        [[got]] = session(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=TOL, rtol=0)


def test_one_dimensional_fused_op_at_two_lengths():
    module = FusedInvolution(kernel=5, stride=2, ndim=1).eval()
    proto = to_onnx(module, (torch.randn(2, 16, 17), ), ['input'], ['output'],
                    ({0: Dim('batch', min=1), 2: Dim.AUTO}, ))
    session = _session(proto, [('output', 1)])
    for shape in ((2, 16, 17), (1, 16, 30)):
        x = torch.randn(shape)
        with torch.no_grad():
            expected = module(x)
        torch.testing.assert_close(session(x)[0][0], expected, atol=TOL, rtol=0)
