"""The involution op and layer in ONNX: exact against PyTorch in onnxruntime, dynamic shapes."""
import onnx
import pytest
import torch
from torch import nn
from torch.export import Dim

from mmrednet.deployment import GraphMetadata, OnnxRuntimeGraph
from mmrednet.deployment.onnx.export import to_onnx, write_metadata
from mmrednet.models import Involution, Involution1d
from mmrednet.ops import involution

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
