"""An AOTInductor package that cannot run here is refused with an error that says why
(another CPU instruction set, torch release or machine, a missing op library, not our
file), before any of its compiled code is loaded."""
import contextlib
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile
from dataclasses import asdict

import pytest
import torch
from torch import nn
from torch.export import Dim

from mmrednet.deployment import GraphMetadata, load_package, runtime_model_cfg
from mmrednet.deployment.aoti import package as aoti_package
from mmrednet.deployment.aoti.export import called_ops, compile_module, temporary_package
from mmrednet.deployment.aoti.export import package as package_files
from mmrednet.deployment.aoti.package import IncompatiblePackageError, PackageInfo
from mmrednet.deployment.aoti.runner import ServedPackage
from mmrednet.deployment.rewrites import CeilModeAvgPool2d, shape_generic
from mmrednet.models import Involution
from mmrednet.ops import involution

from .det_helpers import ROOT
from .test_onnx_op import FusedInvolution


@pytest.fixture(scope='module')
def package(tmp_path_factory):
    """A conv + involution layer as a package (about 15 s to compile on 2 cores)."""
    module = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1),
                           Involution(16, kernel_size=3, group_channels=8)).eval()
    x = torch.randn(1, 3, 12, 10)
    path = temporary_package(module, x, str(tmp_path_factory.mktemp('package')), 'tiny')
    return path, module, x


def _rewrite(path: str, out, **changes) -> str:
    """A copy of the package at ``out`` with its ``mmrednet.json`` changed."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, 'w') as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith('extra/mmrednet.json'):
                data = json.dumps(dict(json.loads(data), **changes)).encode()
            dst.writestr(item, data)
    return str(out)


def layer_ops() -> list:
    """The ``mmrednet::`` ops an exported involution layer calls (in eval mode)."""
    layer = Involution(16, kernel_size=3, group_channels=8).eval()
    return called_ops(torch.export.export(layer, (torch.randn(1, 16, 5, 5), ), strict=False))


def test_package_runs_and_records_what_it_needs(package):
    path, module, x = package
    info = PackageInfo.read(path)
    assert info.ops == layer_ops()
    assert info.torch == aoti_package.torch_release() and info.cpu_isa == aoti_package.cpu_isa()
    [[out]] = load_package(path)['main'](x)
    with torch.no_grad():
        torch.testing.assert_close(out, module(x), atol=1e-5, rtol=1e-5)


class _BothOps(nn.Module):
    """The involution op on a generated kernel, then the fused op."""

    def __init__(self) -> None:
        super().__init__()
        self.span = nn.Conv2d(16, 18, 1)
        self.fused = FusedInvolution()

    def forward(self, x):
        kernel = self.span(x).unflatten(1, (2, 3, 3))
        return self.fused(involution(x, kernel, padding=1))


def test_called_ops_are_found_in_the_graph():
    program = torch.export.export(_BothOps().eval(), (torch.randn(1, 16, 5, 5), ), strict=False)
    assert called_ops(program) == ['mmrednet::involution', 'mmrednet::involution_fused']
    assert called_ops(torch.export.export(nn.ReLU(), (torch.randn(2), ))) == []


@pytest.mark.parametrize('size', [(9, 9), (10, 7), (16, 16)])
def test_ceil_mode_pool_rewrite_is_the_same_function(size):
    pool = nn.AvgPool2d(2, 2, ceil_mode=True)
    x = torch.randn(2, 3, *size)
    rewritten = shape_generic(nn.Sequential(pool))
    assert isinstance(rewritten[0], CeilModeAvgPool2d)
    torch.testing.assert_close(rewritten(x), pool(x), atol=1e-6, rtol=1e-6)


def test_dynamic_package_with_strided_involution_at_odd_sizes(tmp_path):
    """A RedNet downsampling step (ceil-mode pooled kernel branch) exported with
    dynamic batch and size, run at sizes it was not traced at, odd ones included."""
    module = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1),
                           Involution(16, kernel_size=7, group_channels=8, stride=2)).eval()
    files, ops = compile_module(shape_generic(copy.deepcopy(module)), torch.randn(2, 3, 16, 16),
                                {0: Dim('batch', min=1), 2: Dim('height', min=8),
                                 3: Dim('width', min=8)})
    path = str(tmp_path / 'dynamic.pt2')
    meta = GraphMetadata('test', 'test', 'main', [('out', 1)])
    package_files(path, dict(main=files), PackageInfo(
        graphs=dict(main=asdict(meta)), inputs=dict(main=[None, 3, None, None]), ops=ops))
    graph = load_package(path)['main']
    for shape in [(1, 3, 18, 20), (1, 3, 17, 19), (3, 3, 33, 24)]:
        x = torch.randn(shape)
        [[out]] = graph(x)
        with torch.no_grad():
            torch.testing.assert_close(out, module(x), atol=1e-5, rtol=1e-5)


def test_dynamic_package_calls_the_fused_op(tmp_path):
    """The fused op compiled into a package (stride 1 with the span's bias, stride 2
    without), with dynamic batch and size, run at sizes it was not traced at, odd ones
    included: it records the op and matches eager."""
    module = nn.Sequential(FusedInvolution(stride=1, bias=True),
                           FusedInvolution(stride=2, bias=False)).eval()
    files, ops = compile_module(shape_generic(copy.deepcopy(module)), torch.randn(2, 16, 16, 16),
                                {0: Dim('batch', min=1), 2: Dim('height', min=8),
                                 3: Dim('width', min=8)})
    assert ops == ['mmrednet::involution_fused']
    path = str(tmp_path / 'fused.pt2')
    meta = GraphMetadata('test', 'test', 'main', [('out', 1)])
    package_files(path, dict(main=files), PackageInfo(
        graphs=dict(main=asdict(meta)), inputs=dict(main=[None, 16, None, None]), ops=ops))
    assert PackageInfo.read(path).ops == ['mmrednet::involution_fused']
    graph = load_package(path)['main']
    for shape in [(1, 16, 18, 20), (1, 16, 17, 19), (3, 16, 33, 24)]:
        x = torch.randn(shape)
        [[out]] = graph(x)
        with torch.no_grad():
            torch.testing.assert_close(out, module(x), atol=1e-5, rtol=1e-5)


def test_the_package_takes_float32_as_onnxruntime_does(package):
    path, module, x = package
    graph = load_package(path)['main']
    [[want]] = graph(x)
    [[half]] = graph(x.half())  # cast up, exactly
    assert half.dtype == torch.float32 and torch.equal(half, graph(x.half().float())[0][0])
    with pytest.warns(UserWarning, match='float64 input is rounded to float32'):
        [[double]] = graph(x.double())
    assert torch.equal(double, want)
    with pytest.raises(ValueError, match='takes input as float32.*torch.uint8'):
        graph(x.to(torch.uint8))


@pytest.mark.parametrize('field, value, expected', [
    ('torch', '2.0.0', r'compiled against torch 2\.0\.0, this process has torch'),
    ('machine', 'riscv64', 'compiled for riscv64 CPUs'),
    ('cpu_isa', 'avx1024', 'compiled for the avx1024 instruction set, which this CPU lacks.*'
     'export it again'),
    ('ops', ['mmrednet::involution', 'mmrednet::not_an_op'],
     r'calls mmrednet::not_an_op, which no library in this process defines: load the '
     r'mmrednet op library \(version'),
])
def test_other_builds_are_refused_before_loading(package, tmp_path, field, value, expected):
    path = _rewrite(package[0], tmp_path / 'other.pt2', **{field: value})
    with pytest.raises(IncompatiblePackageError, match=expected):
        load_package(path)


def test_files_that_are_not_our_packages(package, tmp_path):
    not_zip = tmp_path / 'model.pt2'
    not_zip.write_bytes(b'not a zip')
    with pytest.raises(ValueError, match='is not an AOTInductor package'):
        load_package(str(not_zip))
    foreign = tmp_path / 'foreign.pt2'
    with zipfile.ZipFile(foreign, 'w') as archive:
        archive.writestr('foreign/archive_format', 'pt2')
    with pytest.raises(ValueError, match='not written by mmrednet.*export_aoti.py'):
        load_package(str(foreign))
    with pytest.raises(ValueError, match='unreadable extra/mmrednet.json'):
        load_package(_rewrite(package[0], tmp_path / 'future.pt2', format=3))
    with pytest.raises(FileNotFoundError, match='AOTInductor package not found'):
        load_package(str(tmp_path / 'none.pt2'))


def _with_member(path: str, out, member_text: bytes, rename=None) -> str:
    """A copy of the package at ``out`` with ``extra/mmrednet.json`` replaced by
    ``member_text`` and each name passed through ``rename``."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, 'w') as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith('extra/mmrednet.json'):
                data = member_text
            dst.writestr(rename(item.filename) if rename else item.filename, data)
    return str(out)


def _info(path: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        [member] = [n for n in archive.namelist() if n.endswith('extra/mmrednet.json')]
        return json.loads(archive.read(member))


def test_packages_of_the_first_format_still_load(package, tmp_path):
    """Format 1 named the main graph's AOTInductor model ``main`` and recorded ``threads``."""
    path, module, x = package
    info = dict(_info(path), format=1, threads=2)
    old = _with_member(path, tmp_path / 'old.pt2', json.dumps(info).encode(),
                       lambda name: name.replace('/data/aotinductor/model/',
                                                 '/data/aotinductor/main/'))
    assert PackageInfo.read(old).model_name('main') == 'main'
    [[out]] = load_package(old)['main'](x)
    with torch.no_grad():
        torch.testing.assert_close(out, module(x), atol=1e-5, rtol=1e-5)


def _graph(info: dict, **changes) -> dict:
    return dict(info, graphs=dict(main=dict(info['graphs']['main'], **changes)))


# Each of these crafted files made the loader raise something else than its ValueError
# (AttributeError, RecursionError, TypeError, KeyError) or load what it cannot run.
MALFORMED = {
    'a list': lambda info: [],
    'a string': lambda info: 'mmrednet',
    'nested too deep': lambda info: None,  # written below as raw text
    'not UTF-8': lambda info: None,
    'format true': lambda info: dict(info, format=True),
    'unknown key': lambda info: dict(info, extra=1),
    'no inputs for main': lambda info: dict(info, inputs={}),
    'graphs a list': lambda info: dict(info, graphs=[1]),
    'graph not a dict': lambda info: dict(info, graphs=dict(main=3)),
    'graph misses keys': lambda info: dict(info, graphs=dict(main=dict(kind='classifier'))),
    'graph with unknown key': lambda info: _graph(info, weights='x'),
    'group count a string': lambda info: _graph(info, groups=[['out', '1']]),
    'group not a pair': lambda info: _graph(info, groups=[['out']]),
    'size divisor zero': lambda info: _graph(info, size_divisor=0),
    'graph named otherwise': lambda info: _graph(info, graph='other'),
    'companion outside': lambda info: _graph(info, companions={'bbox_head': '../x.onnx'}),
    'input shape strings': lambda info: dict(info, inputs=dict(main=['1'])),
    'op without namespace': lambda info: dict(info, ops=['involution']),
    'op library without version': lambda info: dict(info, op_library={'name': 'x'}),
    'torch a number': lambda info: dict(info, torch=2),
    'huge int': lambda info: _graph(info, size_divisor=10 ** 100),
}


@pytest.mark.parametrize('case', list(MALFORMED))
def test_crafted_info_gives_the_loaders_value_error(package, tmp_path, case):
    path = package[0]
    if case == 'nested too deep':
        text = b'[' * 200000 + b']' * 200000
    elif case == 'not UTF-8':
        text = b'\xff\xfe{'
    else:
        text = json.dumps(MALFORMED[case](_info(path))).encode()
    crafted = _with_member(path, tmp_path / 'crafted.pt2', text)
    with pytest.raises(ValueError, match=r'crafted\.pt2: unreadable extra/mmrednet\.json'):
        load_package(crafted)
    with pytest.raises(ValueError, match=r'unreadable extra/mmrednet\.json'):
        runtime_model_cfg(dict(type='ImageClassifier'), crafted, 'aoti')


def test_a_package_loads_and_runs_without_onnx_installed(package):
    """onnx, onnxscript and onnxruntime cannot be imported: a .pt2 still loads (through
    the package's public names) and runs."""
    path, module, x = package
    code = '''
import importlib.machinery, sys
class NotInstalled:  # finds them first; importing them fails as for a missing package
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('onnx', 'onnxscript', 'onnxruntime'):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ModuleNotFoundError(f'No module named {spec.name!r} (blocked)')
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, NotInstalled())
import torch
from mmrednet.deployment import load_graphs, runtime_model_cfg
graph = load_graphs(sys.argv[1], 'aoti')['main']
[[out]] = graph(torch.load(sys.argv[2]))
torch.save(out, sys.argv[3])
assert not {'onnx', 'onnxscript', 'onnxruntime'} & set(sys.modules)
'''
    directory = osp.dirname(path)
    torch.save(x, osp.join(directory, 'x.pt'))
    out = osp.join(directory, 'out.pt')
    done = subprocess.run([sys.executable, '-c', code, path, osp.join(directory, 'x.pt'), out],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    with torch.no_grad():
        torch.testing.assert_close(torch.load(out), module(x), atol=1e-5, rtol=1e-5)


def test_a_served_package_ends_with_its_context(package, tmp_path):
    """The benchmark enters each runner process into an ExitStack as it starts it, so an
    export that fails later ends the processes already started."""
    runner = tmp_path / 'runner'
    runner.write_text('#!/bin/sh\nwhile read line; do echo 2.5; done\n')  # 2.5 ms a run
    runner.chmod(0o755)
    with pytest.raises(RuntimeError, match='a later export failed'):
        with contextlib.ExitStack() as processes:
            served = processes.enter_context(ServedPackage(
                str(runner), 'op_library.so', package[0], package[2], str(tmp_path), 1))
            assert served() == 0.0025
            raise RuntimeError('a later export failed')
    assert served.process.poll() is not None
    served.close()  # again: nothing left to close
