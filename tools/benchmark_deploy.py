"""Deployed CPU latency of RedNet-50 against ResNet-50 in one run: PyTorch eager,
AOTInductor packages (``.pt2``, loaded in Python and by the C++ runner) and ONNX in onnxruntime.

Sections (batch 1, ``--threads`` threads everywhere, random weights): ``op``
(one RedNet-50 stage's 7x7 involution layer in its two ONNX forms, with eager
beside them), ``classifier`` (224x224) and ``retinanet`` (800x1344); a package that
calls the fused involution op is also timed with that op as its composition
(``.pt2 (composed)``). What each measures and how: ``mmrednet/benchmarks/deploy.py``.

Prints tables; with ``--out-dir`` writes ``deploy_benchmark.csv``,
``deploy_ratios.csv`` (with a model section) and ``deploy_benchmark.png``.
Figures are only worth reading from a machine with nothing else running.

Example::

    python tools/benchmark_deploy.py --rounds 7 --out-dir work_dirs/benchmark_deploy
    python tools/benchmark_deploy.py --sections op      # the ONNX op forms alone
"""
import argparse
import os.path as osp

from mmrednet.benchmarks.deploy import BACKENDS, SECTIONS, Options, run

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sections', nargs='+', default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument('--backends', nargs='+', default=list(BACKENDS), choices=BACKENDS,
                        help='deployed backends of the model sections (eager always runs)')
    parser.add_argument('--threads', type=int, default=defaults.threads,
                        help='onnxruntime intra-op threads, torch threads, the runner\'s threads')
    parser.add_argument('--rounds', type=int, default=defaults.rounds,
                        help='timed runs of every case')
    parser.add_argument('--runner-dir', default=defaults.runner_dir,
                        help='where the C++ runner (tools/deployment/cpp) is built (cmake)')
    parser.add_argument('--classifier-shape', type=int, nargs=2,
                        default=defaults.classifier_shape, metavar=('H', 'W'))
    parser.add_argument('--retinanet-shape', type=int, nargs=2,
                        default=defaults.retinanet_shape, metavar=('H', 'W'))
    parser.add_argument('--out-dir', help='write deploy_benchmark.csv, deploy_ratios.csv and '
                        'deploy_benchmark.png')
    args = parser.parse_args(argv)
    return Options(
        sections=args.sections, backends=args.backends, threads=args.threads,
        rounds=args.rounds, classifier_shape=tuple(args.classifier_shape),
        retinanet_shape=tuple(args.retinanet_shape),
        retinanet_config=osp.join(ROOT, 'configs', 'rednet', 'retinanet_rednet50_fpn_1x_coco.py'),
        runner_source=osp.join(ROOT, 'tools', 'deployment', 'cpp'),
        runner_dir=args.runner_dir, out_dir=args.out_dir)


def main(argv=None):
    return run(parse_args(argv))


if __name__ == '__main__':
    main()
