"""The launchers: torchrun on one node and on two "nodes" of this machine, Slurm, SyncBN on CPU."""
import os
import os.path as osp
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import MODELS, init_default_scope

from mmrednet.apis import setup_cpu_distributed

from .det_helpers import DEMO_RETINANET, ROOT, tiny_cfg, tiny_dataset
from .resume_helpers import demo_cfg, differing, tiny_shapes_imagenet, trained_state, write_cfg

CITYSCAPES_FPN = osp.join(ROOT, 'configs', 'rednet', 'fpn_rednet50_4xb2-80k_cityscapes-512x1024.py')
BN_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')
ADDRESS_IN_USE = ('address already in use', 'EADDRINUSE', 'errno: 98')
GRAD_STRIDES_WARNING = 'Grad strides do not match bucket view strides'


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return tiny_dataset(tmp_path_factory)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ('PORT', 'NNODES', 'NODE_RANK', 'MASTER_ADDR')}
    # The launchers' CPU path (gloo), also on a machine with GPUs.
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='', **extra)
    return env


def _launch(script: str, *args: str) -> subprocess.CompletedProcess:
    # No PORT: on one node the launchers let torchrun pick a free port itself.
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args], check=False,
                          capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _dist_cfg(shapes: str, tmp_path, name: str, **kwargs) -> str:
    cfg = tiny_cfg(DEMO_RETINANET, shapes, str(tmp_path / name), **kwargs)
    cfg.log_level = 'INFO'  # the environment summary says whether it ran distributed
    path = tmp_path / f'{name}.py'
    cfg.dump(str(path))
    return str(path)


def test_two_process_cpu_training_and_testing(shapes, tmp_path):
    config = _dist_cfg(shapes, tmp_path, 'dist', max_iters=2)
    proc = _launch('dist_train.sh', config, '2')
    # The gradients match DDP's buckets (no strided copy, no warning about one).
    assert GRAD_STRIDES_WARNING not in proc.stdout + proc.stderr
    ckpt = torch.load(tmp_path / 'dist' / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2
    runs = [n for n in os.listdir(tmp_path / 'dist') if n[:2].isdigit()]
    assert len(runs) == 1  # rank 0 alone writes the run directory
    with open(tmp_path / 'dist' / runs[0] / f'{runs[0]}.log') as f:
        log = f.read()
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log  # mmengine's name for the world size

    # Each process tests its share of val; rank 0 gathers them and reports the metric.
    proc = _launch('dist_test.sh', config, str(tmp_path / 'dist' / 'iter_2.pth'), '2',
                   '--work-dir', str(tmp_path / 'dist_test'))
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """End a launcher we started, with the processes torchrun spawned (its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _two_nodes(log_dir, script: str, *args: str, timeout: float = 300) -> list:
    """Run ``script`` as node 0 and node 1 of one process each (NNODES=2) on 127.0.0.1.

    The port is picked free and then released, so another process can take it
    before node 0 binds it: on "address already in use" the pair is started
    again on a new port, at most three times. Returns the nodes' outputs.
    """
    for attempt in range(3):
        port = str(_free_port())
        logs = [log_dir / f'{script}.{attempt}.node{rank}.log' for rank in (0, 1)]
        nodes = []
        for rank, log in enumerate(logs):
            with open(log, 'w') as out:
                nodes.append(subprocess.Popen(
                    ['bash', osp.join(ROOT, 'tools', script), *args], cwd=ROOT,
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    env=_env(NNODES='2', NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                             PORT=port)))
        deadline = time.monotonic() + timeout
        try:
            # One failed node would leave the other waiting until torch's own timeout.
            while any(p.poll() is None for p in nodes) and time.monotonic() < deadline \
                    and all(p.poll() in (None, 0) for p in nodes):
                time.sleep(0.5)
        finally:
            for p in nodes:
                _stop(p)
        outputs = [log.read_text() for log in logs]
        if all(p.returncode == 0 for p in nodes):
            return outputs
        if not any(s in outputs[0] for s in ADDRESS_IN_USE):
            break
    return pytest.fail('two-node run failed:\n' + '\n'.join(
        f'--- node {r} (exit {p.returncode}):\n{out[-3000:]}'
        for r, (p, out) in enumerate(zip(nodes, outputs, strict=True))))


def test_two_nodes_train_to_identical_weights_and_test(shapes, tmp_path):
    """tools/dist_train.sh with NNODES=2: each node one process, each rank its own image."""
    cfg = tiny_cfg(DEMO_RETINANET, shapes, str(tmp_path / 'work'))  # one epoch
    cfg.train_dataloader.dataset.indices = 2  # rank 0 trains on image 0, rank 1 on image 1
    cfg.custom_imports.imports.append('tests.weight_dump_hook')
    cfg.custom_hooks = [dict(type='DumpWeightsHook', out_dir=str(tmp_path))]
    cfg.log_level = 'INFO'
    config = str(tmp_path / 'two_nodes.py')
    cfg.dump(config)
    outputs = _two_nodes(tmp_path, 'dist_train.sh', config, '1')
    assert 'Distributed training: True' in outputs[0] and 'GPU number: 2' in outputs[0]

    before, after = ([torch.load(tmp_path / f'rank{r}_{when}_train.pth', weights_only=True)
                      for r in (0, 1)] for when in ('before', 'after'))
    # BN statistics are each process's own (DDP with broadcast_buffers=False, as
    # mmengine's default wrapper): they differ, the parameters must not.
    params = [k for k in after[0] if not k.endswith(BN_BUFFERS)]
    assert len(params) > 100
    for name in params:
        assert torch.equal(after[0][name], after[1][name]), name
    # It trained: gradients of two different images, averaged across the nodes.
    assert any(not torch.equal(before[0][n], after[0][n]) for n in params)

    # dist_test.sh the same way: each node tests its share, rank 0 reports the metric.
    torch.save(dict(state_dict=after[0], meta=dict()), tmp_path / 'trained.pth')
    outputs = _two_nodes(tmp_path, 'dist_test.sh', config, str(tmp_path / 'trained.pth'), '1',
                         '--work-dir', str(tmp_path / 'test'))
    assert 'coco/bbox_mAP' in outputs[0]


def test_launchers_name_their_missing_arguments():
    for script, usage in (('dist_train.sh', 'CONFIG NPROC'),
                          ('dist_test.sh', 'CONFIG CHECKPOINT NPROC'),
                          ('slurm_train.sh', 'PARTITION JOB_NAME CONFIG WORK_DIR'),
                          ('slurm_test.sh', 'PARTITION JOB_NAME CONFIG CHECKPOINT')):
        proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), 'only_a_config.py'],
                              check=False, capture_output=True, text=True)
        assert proc.returncode != 0 and f'usage: tools/{script} {usage}' in proc.stderr


FAKE_SRUN = """#!/usr/bin/env bash
# Stands in for Slurm's srun: records its arguments (one per line) and PYTHONPATH.
printf '%s\\n' "$@" > "$SRUN_RECORD"
printf '%s\\n' "$PYTHONPATH" > "$SRUN_RECORD.pythonpath"
"""


@pytest.mark.parametrize('script, positional, tool, extra', [
    # Training resumes from the work dir's last checkpoint: a requeued job goes on.
    ('slurm_train.sh', ['cfg.py', 'work_dirs/x'], ['cfg.py', '--work-dir=work_dirs/x'],
     ['--resume']),
    ('slurm_test.sh', ['cfg.py', 'ckpt.pth'], ['cfg.py', 'ckpt.pth'], []),
])
def test_slurm_scripts_pass_what_mmdet_passes(tmp_path, script, positional, tool, extra):
    """mmdet 3.3.0's tools/slurm_{train,test}.sh arguments (and --resume), seen by a stand-in
    srun."""
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / 'srun_args'
    env = _env(PATH=f'{srun.parent}{os.pathsep}{os.environ["PATH"]}', SRUN_RECORD=str(record),
               GPUS='16', GPUS_PER_NODE='4', CPUS_PER_TASK='6',
               SRUN_ARGS='--quotatype=auto --time=1:00:00', PYTHONPATH='/elsewhere')
    proc = subprocess.run(['bash', osp.join(ROOT, 'tools', script), 'gpu_part', 'red50',
                           *positional, '--cfg-options', 'a=1'], env=env, cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    tool_py = osp.join(ROOT, 'tools', 'train.py' if 'train' in script else 'test.py')
    assert record.read_text().splitlines() == [
        '-p', 'gpu_part', '--job-name=red50', '--gres=gpu:4', '--ntasks=16',
        '--ntasks-per-node=4', '--cpus-per-task=6', '--kill-on-bad-exit=1',
        '--quotatype=auto', '--time=1:00:00',
        sys.executable, '-u', tool_py, *tool, '--launcher', 'slurm', *extra,
        '--cfg-options', 'a=1']
    assert (tmp_path / 'srun_args.pythonpath').read_text().strip() == f'{ROOT}:/elsewhere'

    # The defaults are mmdet's: 8 GPUs, 8 per node, 5 CPUs per task, no extra srun args.
    for name in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS'):
        env.pop(name)
    subprocess.run(['bash', osp.join(ROOT, 'tools', script), 'p', 'j', *positional],
                   env=env, cwd=tmp_path, check=True, capture_output=True)
    assert record.read_text().splitlines()[:8] == [
        '-p', 'p', '--job-name=j', '--gres=gpu:8', '--ntasks=8', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1']


@pytest.fixture
def cpu_process_group(tmp_path, monkeypatch):
    """A one-process gloo group, as a CPU launcher run has, and no CUDA (even on a GPU machine)."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def _seg_forward(cfg: Config) -> None:
    """A training-mode forward of the config's segmentor on a small random batch."""
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).train()
    model.backbone(torch.rand(2, 3, 64, 64))


def test_sync_bn_becomes_bn_on_cpu_with_one_warning(cpu_process_group, tmp_path):
    cfg = Config.fromfile(CITYSCAPES_FPN)
    assert cfg.model.backbone.norm_cfg.type == 'SyncBN'
    # What torch does with SyncBN on the CPU once a process group exists:
    with pytest.raises(ValueError, match='SyncBatchNorm expected input tensor to be on GPU'):
        _seg_forward(Config.fromfile(CITYSCAPES_FPN))

    log = tmp_path / 'log.txt'
    MMLogger.get_instance('sync_bn_test', log_file=str(log))  # the current logger now
    setup_cpu_distributed(cfg, 'pytorch')
    warning = [line for line in log.read_text().splitlines() if 'SyncBN' in line]
    assert len(warning) == 1, warning
    assert 'uses BN' in warning[0] and 'model.backbone.norm_cfg' in warning[0] \
        and 'model.decode_head.norm_cfg' in warning[0]
    assert 'SyncBN' not in repr(cfg.model)
    _seg_forward(cfg)  # trains on the CPU now
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == 'StrideMatchedDistributedDataParallel'


def test_the_runners_sync_bn_is_dropped_on_cpu_with_the_warning(cpu_process_group, tmp_path):
    # cfg.sync_bn makes mmengine's Runner convert every BN to SyncBN after building the model.
    cfg = Config.fromfile(CITYSCAPES_FPN)
    cfg.sync_bn = 'torch'
    log = tmp_path / 'log.txt'
    MMLogger.get_instance('sync_bn_runner_test', log_file=str(log))
    setup_cpu_distributed(cfg, 'pytorch')
    assert 'sync_bn' not in cfg
    [warning] = [line for line in log.read_text().splitlines() if 'SyncBN' in line]
    assert 'sync_bn (every BN)' in warning


@pytest.mark.parametrize('wrapper', ['MMDistributedDataParallel',
                                     'StrideMatchedDistributedDataParallel'])
def test_the_cpu_wrapper_gives_gradients_the_bucket_strides(cpu_process_group, wrapper):
    """RedNet's 1x1 convs on channels-last input: with mmengine's wrapper some weight gradients
    have other strides than their parameters (what DDP warns about, once a process: the
    launch above checks the warning), with the one the CPU launcher picks none."""
    from mmengine.registry import MODEL_WRAPPERS

    torch.manual_seed(0)
    backbone = MODELS.build(dict(type='mmrednet.RedNet', depth=26, out_indices=(3, )))
    ddp = MODEL_WRAPPERS.build(dict(type=wrapper, module=backbone, device_ids=None))
    ddp(torch.randn(2, 3, 64, 64))[0].sum().backward()
    differ = [p for p in backbone.parameters() if p.grad.stride() != p.stride()]
    if wrapper == 'MMDistributedDataParallel':  # 1x1 weights: the same order, other strides
        assert differ and all(p.shape[2:] == (1, 1) and p.grad.is_contiguous() for p in differ)
    else:
        assert differ == []


def _training_ranks(launcher_pid: int) -> dict:
    """``{rank: pid}`` of the training processes below a launcher (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    parent = int(f.read().rsplit(')', 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
    ranks, todo = {}, [launcher_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                env = dict(v.split(b'=', 1) for v in f.read().split(b'\0') if b'=' in v)
        except OSError:
            continue
        if b'RANK' in env and b'LOCAL_RANK' in env:
            ranks[int(env[b'RANK'])] = pid
    return ranks


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_all_at_one_iteration_and_resumes_exactly(tmp_path):
    """SIGUSR1 reaches rank 1 only: both ranks save at the same iteration (rank 0 writes), rank 0
    alone requeues the Slurm job, and the resumed 2-process run ends as one never stopped (each
    rank restores its own random generators)."""
    config = write_cfg(demo_cfg(tiny_shapes_imagenet(tmp_path), str(tmp_path / 'unused'),
                                epochs=4), tmp_path / 'cfg.py')
    _launch('dist_train.sh', config, '2', '--work-dir', str(tmp_path / 'ref'))

    scontrol = tmp_path / 'bin' / 'scontrol'
    scontrol.parent.mkdir()
    scontrol.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> "$SCONTROL_RECORD"\n')
    scontrol.chmod(0o755)
    record, work = tmp_path / 'scontrol_args', tmp_path / 'work'
    env = _env(SLURM_JOB_ID='99', SCONTROL_RECORD=str(record),
               PATH=f'{scontrol.parent}{os.pathsep}{os.environ["PATH"]}')
    command = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2', '--work-dir',
               str(work), '--resume']
    with open(tmp_path / 'stopped.log', 'w') as log:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not (work / 'epoch_1.pth').exists():  # the signal handlers are installed
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / 'stopped.log').read_text()[-3000:]
                time.sleep(0.05)
            os.kill(_training_ranks(proc.pid)[1], signal.SIGUSR1)
            assert proc.wait(timeout=300) != 0  # torchrun reports the ranks' exit status 138
        finally:
            _stop(proc)
    output = (tmp_path / 'stopped.log').read_text()
    saved = (work / 'last_checkpoint').read_text()
    assert osp.basename(saved).startswith('iter_') and osp.exists(saved), output[-3000:]
    assert record.read_text().splitlines() == ['requeue', '99']
    # Rank 0 did not get the signal and stopped at the same iteration (else it would wait in
    # DDP's next all-reduce); the requeued job resumes.
    assert 'SIGUSR1 received: saving a checkpoint after iteration' in output
    _launch('dist_train.sh', config, '2', '--work-dir', str(work), '--resume')
    expected = trained_state(tmp_path / 'ref' / 'epoch_4.pth')
    assert differing(expected, trained_state(work / 'epoch_4.pth')) == []
