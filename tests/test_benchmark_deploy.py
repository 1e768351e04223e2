"""The deploy benchmark (mmrednet.benchmarks.deploy, tools/benchmark_deploy.py) runs end to
end (its op section: ONNX forms against eager)."""
from mmrednet.benchmarks.deploy import Options, run


def test_op_section_times_checks_and_writes(tmp_path):
    rows, ratios = run(Options(sections=['op'], rounds=1, out_dir=str(tmp_path)))
    backends = {'onnxruntime slice per tap', 'onnxruntime pad + gather', 'pytorch eager'}
    assert {r.backend for r in rows} == backends and len(rows) == 4 * len(backends)
    assert all(r.median_ms > 0 and r.max_abs_diff < 1e-4 for r in rows)  # checked vs eager
    assert ratios == []  # the RedNet/ResNet ratios belong to the model sections
    assert sorted(p.name for p in tmp_path.iterdir()) == ['deploy_benchmark.csv',
                                                          'deploy_benchmark.png']
