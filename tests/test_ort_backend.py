"""OnnxRuntimeGraph takes float32: exact casts are made, a lossy one warns, others are refused;
a deployment's metadata cannot point outside its directory."""
import warnings

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from mmrednet.deployment import GraphMetadata, OnnxRuntimeGraph, load_deployment
from mmrednet.deployment.onnx.export import write_metadata


def _identity_model(**metadata) -> onnx.ModelProto:
    shape = ['batch', 3, 'height', 'width']
    graph = helper.make_graph([helper.make_node('Identity', ['input'], ['out'])], 'identity',
                              [helper.make_tensor_value_info('input', TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info('out', TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)], ir_version=10)
    write_metadata(GraphMetadata('classifier', 'ImageClassifier', 'main', [('out', 1)],
                                 **metadata), model)
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope='module')
def identity():
    """A graph that returns its float32 input, with the metadata the exporter writes."""
    return OnnxRuntimeGraph(_identity_model().SerializeToString(), name='the identity graph')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_exact_casts_are_silent(identity, dtype):
    x = torch.randn(2, 3, 4, 5).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        [[out]] = identity(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, x.float())


def test_float64_is_rounded_with_a_warning(identity):
    x = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    with pytest.warns(UserWarning, match='float64 input is rounded to float32'):
        [[out]] = identity(x)
    assert torch.equal(out, x.float())


@pytest.mark.parametrize('dtype', [torch.uint8, torch.int64, torch.bool])
def test_non_float_inputs_are_refused(identity, dtype):
    x = torch.zeros(1, 3, 4, 5, dtype=dtype)
    with pytest.raises(ValueError, match=f'the identity graph takes input as float32.*{dtype}'):
        identity(x)


@pytest.mark.parametrize('name', ['../outside.onnx', 'sub/../../outside.onnx', '.hidden.onnx',
                                  '..', 'OUTSIDE'])
def test_companions_are_plain_names_beside_the_main_file(tmp_path, name):
    outside = tmp_path / 'outside.onnx'
    onnx.save(_identity_model(), str(outside))
    (tmp_path / 'deployment').mkdir()
    main = tmp_path / 'deployment' / 'model.onnx'
    name = str(outside) if name == 'OUTSIDE' else name  # an absolute path
    onnx.save(_identity_model(companions=dict(bbox_head=name)), str(main))
    with pytest.raises(ValueError, match=r"companions\['bbox_head'\]: expected a file name in "
                       'the same directory'):
        load_deployment(str(main))
