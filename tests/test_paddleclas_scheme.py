"""``paddleclas://`` weights served by a loopback HTTP server, as PaddleClas's files are written."""
import http.server
import multiprocessing
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import CheckpointLoader, load_checkpoint

from mmrednet.apis import PaddleClasCheckpointError, check_pretrained_files
from mmrednet.converters import convert_state_dict, load_source, paddleclas_scheme
from mmrednet.converters.paddleclas_scheme import URL_ENV, paddleclas_state_dict
from mmrednet.models import RedNet

from .det_helpers import ROOT, tiny_dataset
from .official_layout import OfficialRedNet, randomize_norms
from .paddle_format import paddle_rednet_state, save_pdparams
from .tools import run_tool

RETINANET = osp.join(ROOT, 'configs', 'rednet', 'retinanet_rednet50_fpn_1x_coco.py')
IMAGENET_26 = osp.join(ROOT, 'configs', 'rednet', 'rednet26_64xb32-warmup-coslr-130e_imagenet.py')


def _paddle_rednet(path, blocks):
    torch.manual_seed(0)
    backbone = randomize_norms(OfficialRedNet(blocks=blocks, stem_kernel=3).eval())
    state = paddle_rednet_state(backbone, torch.nn.Linear(2048, 1000))
    save_pdparams(state, path)
    return state


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """The served files: a RedNet-26 in Paddle's format, and things that are not RedNets."""
    root = tmp_path_factory.mktemp('served')
    state = _paddle_rednet(root / 'RedNet26_pretrained.pdparams', (1, 2, 4, 1))
    np.save(root / 'fc_weight.npy', state['fc.weight'])  # Paddle's [in, out]
    save_pdparams({'conv1.weight': np.zeros((8, 3, 3, 3), np.float32),
                   'fc.weight': np.zeros((8, 10), np.float32)},
                  root / 'not_a_rednet.pdparams')
    return root


class _Server(http.server.ThreadingHTTPServer):
    """Serves ``routes[path] = (status, body, declared length, stall)``; counts the requests.

    A declared length of -1 sends no Content-Length (the body ends with the
    connection), a string is sent as the header's value, and ``'chunked'``
    sends the body in chunks with a Content-Length of 1 beside them; ``stall``
    seconds pass, silently, after the body is sent.
    """

    def __init__(self):
        super().__init__(('127.0.0.1', 0), _Handler)
        self.routes, self.requests = {}, []

    @property
    def url(self):
        return f'http://127.0.0.1:{self.server_address[1]}'

    def serve(self, path, body, status=200, length=None, stall=0.0):
        self.routes[path] = (status, body, len(body) if length is None else length, stall)


class _Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        status, body, length, stall = self.server.routes.get(
            self.path, (404, b'no such file', 12, 0.0))
        self.send_response(status)
        if length == 'chunked':  # the chunks' lengths, not Content-Length, end the body
            self.send_header('Transfer-Encoding', 'chunked')
            self.send_header('Content-Length', '1')
            body = b''.join(b'%x\r\n%s\r\n' % (len(c), c)
                            for c in (body[:100], body[100:], b''))
        elif isinstance(length, str):
            self.send_header('Content-Length', length)
        elif length >= 0:
            self.send_header('Content-Length', str(length))
        self.end_headers()
        self.wfile.write(body)  # fewer bytes than declared: the connection just closes
        self.wfile.flush()
        time.sleep(stall)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub dir (TORCH_HOME) and no mirror setting from the caller."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.delenv(URL_ENV, raising=False)
    assert torch.hub.get_dir() == str(tmp_path / 'torch' / 'hub')
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def _cached(hub):
    return sorted(os.listdir(hub)) if hub.exists() else []


def _expected(path, stem_kernel=None, with_head=False):
    state, _ = load_source(str(path))
    return convert_state_dict(state, 'imagenet', stem_kernel, with_head)[0]


def _assert_same(got, expected):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_downloads_once_into_the_hub_cache_and_converts(files, server, hub, monkeypatch):
    body = (files / 'RedNet26_pretrained.pdparams').read_bytes()
    server.serve('/mirror/RedNet26_pretrained.pdparams', body)
    monkeypatch.setenv(URL_ENV, server.url + '/mirror/')

    got = CheckpointLoader.load_checkpoint('paddleclas://RedNet26?stem_kernel=7')
    _assert_same(got, _expected(files / 'RedNet26_pretrained.pdparams', 7))
    RedNet(26, stem_kernel=7).load_state_dict(got, strict=True)
    assert got['stem.1.conv2.conv.weight'].shape[0] == 49 * 2  # 7x7 taps, 2 groups
    assert _cached(hub) == ['RedNet26_pretrained.pdparams']  # the file as PaddleClas names it
    assert (hub / 'RedNet26_pretrained.pdparams').read_bytes() == body
    assert server.requests == ['/mirror/RedNet26_pretrained.pdparams']

    # From the cache: no second request; the default stem is the file's 3x3.
    plain = CheckpointLoader.load_checkpoint('paddleclas://RedNet26')
    RedNet(26, stem_kernel=3).load_state_dict(plain, strict=True)
    classifier = CheckpointLoader.load_checkpoint('paddleclas://RedNet26?with_head=1')
    _assert_same(classifier, _expected(files / 'RedNet26_pretrained.pdparams', None, True))
    assert 'head.fc.weight' in classifier
    assert len(server.requests) == 1


def test_a_local_directory_is_read_in_place(files, hub, monkeypatch):
    monkeypatch.setenv(URL_ENV, str(files))
    got = CheckpointLoader.load_checkpoint('paddleclas://RedNet26?stem_kernel=7')
    _assert_same(got, _expected(files / 'RedNet26_pretrained.pdparams', 7))
    assert _cached(hub) == []
    # The whole classifier, for tools/test.py on an ImageNet config (Runner.load_checkpoint).
    init_default_scope('mmpretrain')
    classifier = MODELS.build(Config.fromfile(IMAGENET_26).model)
    load_checkpoint(classifier, 'paddleclas://RedNet26?with_head=1', strict=True)
    fc = np.load(files / 'fc_weight.npy')
    assert torch.equal(classifier.head.fc.weight, torch.from_numpy(fc).t())
    with pytest.raises(PaddleClasCheckpointError, match='RedNet50_pretrained.pdparams'):
        CheckpointLoader.load_checkpoint('paddleclas://RedNet50')
    monkeypatch.setenv(URL_ENV, str(files / 'nowhere'))
    with pytest.raises(PaddleClasCheckpointError, match='neither an http'):
        CheckpointLoader.load_checkpoint('paddleclas://RedNet26')


def _fails(path, *patterns):
    with pytest.raises(PaddleClasCheckpointError) as exc:
        CheckpointLoader.load_checkpoint(path)
    message = str(exc.value)
    for pattern in patterns:
        assert pattern in message, message
    # One clear message: no urllib/pickle traceback chained to it.
    err = exc.value
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    return message


@pytest.mark.parametrize('status', [404, 500])
def test_server_errors_say_how_to_fetch_by_hand(server, hub, monkeypatch, status):
    server.serve('/RedNet50_pretrained.pdparams', b'<html>oops</html>', status=status)
    monkeypatch.setenv(URL_ENV, server.url)
    message = _fails('paddleclas://RedNet50', f'HTTP Error {status}',
                     f'{server.url}/RedNet50_pretrained.pdparams',
                     str(hub / 'RedNet50_pretrained.pdparams'), f'{URL_ENV}=DIR',
                     'model.backbone.init_cfg=None')
    assert len(message.splitlines()) <= 6
    assert _cached(hub) == []


def _refusing_url():
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}'


def test_no_network_says_how_to_fetch_by_hand(hub, monkeypatch):
    monkeypatch.setenv(URL_ENV, _refusing_url())
    _fails('paddleclas://RedNet50?stem_kernel=7', 'could not download',
           str(hub / 'RedNet50_pretrained.pdparams'))
    assert _cached(hub) == []


def test_train_without_network_exits_with_the_how_to(tmp_path_factory, tmp_path, hub,
                                                     monkeypatch, capsys):
    """tools/train.py: the message and an exit status, not a traceback from inside the Runner."""
    monkeypatch.setenv(URL_ENV, _refusing_url())
    assert run_tool('train.py', RETINANET, '--work-dir', tmp_path / 'work', '--cfg-options',
                    *_cfg_options(tiny_dataset(tmp_path_factory))) == 1
    message = capsys.readouterr().err
    assert message.startswith('error: could not download') and 'Connection refused' in message
    assert str(hub / 'RedNet50_pretrained.pdparams') in message
    assert _cached(hub) == []


def test_test_tool_without_network_exits_with_the_how_to(tmp_path_factory, tmp_path, hub,
                                                          monkeypatch, capsys):
    """tools/test.py with CHECKPOINT = paddleclas://...: the message, not a traceback."""
    monkeypatch.setenv(URL_ENV, _refusing_url())
    root = tiny_dataset(tmp_path_factory)
    dataset = 'test_dataloader.dataset.'
    assert run_tool(
        'test.py', RETINANET, 'paddleclas://RedNet50', '--work-dir', tmp_path / 'work',
        '--cfg-options', f'{dataset}data_root={root}/',
        f'{dataset}ann_file=annotations/instances_val.json', f'{dataset}data_prefix.img=val/',
        f'{dataset}metainfo.classes=(circle,square,triangle)',
        'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
        f'test_evaluator.ann_file={root}/annotations/instances_val.json',
        'model.bbox_head.num_classes=3') == 1
    message = capsys.readouterr().err
    assert message.startswith('error: could not download') and 'Connection refused' in message
    assert _cached(hub) == []


def test_a_truncated_download_leaves_nothing_in_the_cache(files, server, hub, monkeypatch):
    body = (files / 'RedNet26_pretrained.pdparams').read_bytes()
    server.serve('/RedNet26_pretrained.pdparams', body[:len(body) // 2], length=len(body))
    monkeypatch.setenv(URL_ENV, server.url)
    _fails('paddleclas://RedNet26', 'truncated', 'nothing was kept')
    assert _cached(hub) == []
    # The next try downloads again and succeeds.
    server.serve('/RedNet26_pretrained.pdparams', body)
    CheckpointLoader.load_checkpoint('paddleclas://RedNet26')
    assert _cached(hub) == ['RedNet26_pretrained.pdparams']


def test_a_stalled_server_times_out(files, server, hub, monkeypatch):
    body = (files / 'RedNet26_pretrained.pdparams').read_bytes()
    server.serve('/RedNet26_pretrained.pdparams', body[:1000], length=len(body), stall=5.0)
    monkeypatch.setenv(URL_ENV, server.url)
    monkeypatch.setattr(paddleclas_scheme, 'DOWNLOAD_TIMEOUT_S', 0.5)
    start = time.monotonic()
    _fails('paddleclas://RedNet26', 'could not download', 'timed out')
    assert time.monotonic() - start < 4.0  # gave up before the server would have closed
    assert _cached(hub) == []


@pytest.mark.parametrize('length', [None, -1], ids=['announced', 'not-announced'])
def test_a_file_over_the_size_bound_is_refused(files, server, hub, monkeypatch, length):
    body = (files / 'RedNet26_pretrained.pdparams').read_bytes()
    server.serve('/RedNet26_pretrained.pdparams', body, length=length)
    monkeypatch.setenv(URL_ENV, server.url)
    monkeypatch.setattr(paddleclas_scheme, 'MAX_DOWNLOAD_BYTES', 4096)
    _fails('paddleclas://RedNet26', 'larger than MAX_DOWNLOAD_BYTES=4096', 'nothing was kept')
    assert _cached(hub) == []


@pytest.mark.parametrize('length', ['abc', '-1', '12, 13', '1e3'])
def test_an_invalid_content_length_is_the_schemes_error(files, server, hub, monkeypatch,
                                                        length):
    """Not a ValueError that tools/test.py would show as a traceback, nor a false truncation."""
    body = (files / 'RedNet26_pretrained.pdparams').read_bytes()
    server.serve('/RedNet26_pretrained.pdparams', body, length=length)
    monkeypatch.setenv(URL_ENV, server.url)
    _fails('paddleclas://RedNet26', 'invalid Content-Length', repr(length), 'nothing was kept')
    assert _cached(hub) == []


@pytest.mark.parametrize('how', ['chunked', 'repeated'])
def test_content_length_that_http_allows(files, server, hub, monkeypatch, how):
    body = (files / 'RedNet26_pretrained.pdparams').read_bytes()
    length = 'chunked' if how == 'chunked' else f'{len(body)}, {len(body)}'
    server.serve('/RedNet26_pretrained.pdparams', body, length=length)
    monkeypatch.setenv(URL_ENV, server.url)
    CheckpointLoader.load_checkpoint('paddleclas://RedNet26')
    assert _cached(hub) == ['RedNet26_pretrained.pdparams']


def test_a_local_file_over_the_size_bound_is_not_read(files, tmp_path, hub, monkeypatch):
    """The size is checked before the file is read (a sparse file of any size costs no disk)."""
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    (mirror / 'RedNet26_pretrained.pdparams').write_bytes(
        (files / 'RedNet26_pretrained.pdparams').read_bytes())
    with open(mirror / 'RedNet38_pretrained.pdparams', 'wb') as f:
        f.write(b'\x80\x04')
        f.truncate(1 << 26)
    monkeypatch.setenv(URL_ENV, str(mirror))
    monkeypatch.setattr(paddleclas_scheme, 'MAX_DOWNLOAD_BYTES', 4096)
    for depth in (26, 38):
        _fails(f'paddleclas://RedNet{depth}', 'larger than MAX_DOWNLOAD_BYTES=4096',
               str(mirror / f'RedNet{depth}_pretrained.pdparams'))
    # And in the cache, where a download that was allowed a larger bound may lie.
    monkeypatch.setenv(URL_ENV, 'http://127.0.0.1:9')
    hub.mkdir(parents=True)
    os.replace(mirror / 'RedNet26_pretrained.pdparams', hub / 'RedNet26_pretrained.pdparams')
    _fails('paddleclas://RedNet26', 'larger than MAX_DOWNLOAD_BYTES=4096', 'delete it')


def test_files_that_are_not_the_named_rednet(files, server, hub, monkeypatch):
    monkeypatch.setenv(URL_ENV, server.url)
    server.serve('/RedNet38_pretrained.pdparams', b'<html>a login page</html>')
    _fails('paddleclas://RedNet38', 'did not give a readable .pdparams of a RedNet-38',
           'nothing was kept')
    server.serve('/RedNet38_pretrained.pdparams', pickle.dumps({'x': print}, protocol=4))
    _fails('paddleclas://RedNet38', 'refusing to unpickle the global builtins.print')
    assert _cached(hub) == []
    # Readable .pdparams, but no RedNet (read from the cache, where a user may put files).
    hub.mkdir(parents=True, exist_ok=True)
    (hub / 'RedNet38_pretrained.pdparams').write_bytes(
        (files / 'not_a_rednet.pdparams').read_bytes())
    _fails('paddleclas://RedNet38', 'not a RedNet', 'delete it to download it again')
    # A RedNet of another depth under this name.
    server.serve('/RedNet101_pretrained.pdparams',
                 (files / 'RedNet26_pretrained.pdparams').read_bytes())
    _fails('paddleclas://RedNet101', 'holds a RedNet-26, not a RedNet-101', 'nothing was kept')
    assert _cached(hub) == ['RedNet38_pretrained.pdparams']  # the user's file, left alone


@pytest.mark.parametrize('path', ['paddleclas://RedNet51', 'paddleclas://ResNet50',
                                  'paddleclas://RedNet50?stem_kernel=4',
                                  'paddleclas://RedNet50?stem=7',
                                  'paddleclas://RedNet50?stem_kernel',
                                  'paddleclas://RedNet50?with_head=maybe'])
def test_bad_names_are_refused_before_training(path, hub):
    _fails(path, 'paddleclas://RedNet<depth>')
    cfg = Config.fromfile(RETINANET)
    assert cfg.model.backbone.init_cfg.checkpoint == 'paddleclas://RedNet50?stem_kernel=7'
    check_pretrained_files(cfg.model)  # the zoo config's own name is fine
    cfg.model.backbone.init_cfg.checkpoint = path
    with pytest.raises(PaddleClasCheckpointError):
        check_pretrained_files(cfg.model)


def _rank_worker(rank, store, env, out_dir):
    """One process of a 2-process gloo group: a failing fetch, then one that works."""
    os.environ.update(env)
    dist.init_process_group('gloo', init_method=f'file://{store}', rank=rank, world_size=2)
    results = []
    try:
        for path in ('paddleclas://RedNet38', 'paddleclas://RedNet26'):
            try:
                results.append(paddleclas_state_dict(path))
            except PaddleClasCheckpointError as err:
                results.append(str(err))
    finally:
        dist.destroy_process_group()
    torch.save(results, osp.join(out_dir, f'rank{rank}.pth'))


def test_distributed_ranks_download_once(files, server, hub, tmp_path):
    """Rank 0 downloads, the other rank reads the cache; a failure stops both, none waits."""
    server.serve('/RedNet26_pretrained.pdparams',
                 (files / 'RedNet26_pretrained.pdparams').read_bytes())
    env = {'TORCH_HOME': os.environ['TORCH_HOME'], URL_ENV: server.url, 'OMP_NUM_THREADS': '1'}
    ctx = multiprocessing.get_context('spawn')
    procs = [ctx.Process(target=_rank_worker, args=(rank, tmp_path / 'store', env, tmp_path))
             for rank in (0, 1)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    hung = [proc for proc in procs if proc.is_alive()]
    for proc in hung:
        proc.kill()
    assert not hung and all(proc.exitcode == 0 for proc in procs)
    (failed0, got0), (failed1, got1) = (
        torch.load(tmp_path / f'rank{rank}.pth', weights_only=True) for rank in (0, 1))
    assert 'HTTP Error 404' in failed0 and failed1 == failed0  # rank 1 has rank 0's message
    _assert_same(got0, _expected(files / 'RedNet26_pretrained.pdparams'))
    _assert_same(got1, got0)
    # Rank 0 alone asked the server: the 404, then the one download.
    assert server.requests == ['/RedNet38_pretrained.pdparams', '/RedNet26_pretrained.pdparams']


def _cfg_options(data_root):
    """The zoo config shrunk on the command line: 1 image of 96x96, 1 iteration, no val."""
    train = 'train_dataloader.'
    dataset = train + 'dataset.'
    return [
        f'{dataset}data_root={data_root}/', f'{dataset}ann_file=annotations/instances_train.json',
        f'{dataset}data_prefix.img=train/', f'{dataset}metainfo.classes=(circle,square,triangle)',
        f'{dataset}indices=1', f'{dataset}pipeline.2.scale=(96,96)',
        f'{train}batch_size=1', f'{train}num_workers=0', f'{train}persistent_workers=False',
        'model.bbox_head.num_classes=3', 'train_cfg.max_epochs=1',
        'val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
        'default_hooks.checkpoint.save_optimizer=False',
    ]


@pytest.mark.slow
def test_zoo_config_trains_with_weights_fetched_by_the_scheme(tmp_path_factory, tmp_path,
                                                              server):
    """tools/train.py CONFIG in a fresh process: the RedNet-50 comes from the loopback server."""
    served = tmp_path / 'RedNet50_pretrained.pdparams'
    _paddle_rednet(served, (3, 4, 6, 3))
    server.serve('/RedNet50_pretrained.pdparams', served.read_bytes())
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch'), OMP_NUM_THREADS='1',
               PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env[URL_ENV] = server.url
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), RETINANET,
         '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', *_cfg_options(tiny_dataset(tmp_path_factory))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert server.requests == ['/RedNet50_pretrained.pdparams']
    assert (tmp_path / 'torch' / 'hub' / 'checkpoints' / served.name).read_bytes() \
        == served.read_bytes()

    assert 'Loads checkpoint by paddleclas backend' in proc.stdout

    # The config freezes the stem and stage 1 and keeps every BN in eval mode: those
    # weights are still the served ones after the training iteration, and the rest trained.
    trained = torch.load(tmp_path / 'work' / 'epoch_1.pth', weights_only=False)['state_dict']
    expected = _expected(served, stem_kernel=7)
    kept = [k for k in expected if k.startswith(('stem.', 'layer1.'))
            or k.endswith(('running_mean', 'running_var'))]
    assert len(kept) > 100
    for key in kept:
        got = trained['backbone.' + key]
        assert torch.equal(got, expected[key].to(got.dtype)), key
    # The served 3x3 stem taps, at the centre of the 7x7 ones (the rest zero).
    state, _ = load_source(str(served))
    span = trained['backbone.stem.1.conv2.conv.weight'].view(2, 7, 7, -1)
    assert torch.equal(span[:, 2:5, 2:5].reshape(18, -1),
                       state['backbone.stem.1.conv2.conv.weight'].flatten(1))
    assert span[:, 0].abs().sum() == 0
    assert not torch.equal(trained['backbone.layer4.0.conv1.weight'],
                           expected['layer4.0.conv1.weight'])  # it did train
