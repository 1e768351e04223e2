"""Benchmarks time their sides interleaved, the order reversed every other round."""
import torch

from mmrednet.benchmarks import memory as benchmark_memory
from mmrednet.utils import interleaved_times


def test_the_order_alternates_between_rounds():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ('rednet', 'resnet', 'cl')}
    rounds = []
    times = interleaved_times(calls, 4, progress=lambda r: (rounds.append(i) or i for i in r))
    assert order == ['rednet', 'resnet', 'cl', 'cl', 'resnet', 'rednet'] * 2
    assert rounds == [0, 1, 2, 3]
    assert {name: len(t) for name, t in times.items()} == dict(rednet=4, resnet=4, cl=4)
    assert all(t >= 0 for ts in times.values() for t in ts)


def test_memory_benchmark_pairs_alternate_which_variant_goes_first(monkeypatch):
    seen = []
    monkeypatch.setattr(benchmark_memory, '_set_memory_saving', lambda model, on: seen.append(on))
    ratio = benchmark_memory.paired_time_ratio(torch.nn.Identity(), lambda: None, 'cpu', 3)
    assert ratio > 0
    # The switches made by the three rounds, then the final reset to the shipped setting.
    assert seen == [True, False, False, True, True, False, True]
