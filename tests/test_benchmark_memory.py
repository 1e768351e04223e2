"""tools/benchmark_memory.py (``mmrednet.benchmarks.memory``) on a tiny input: what it
measures, the ratios and the files."""
import csv
import os
import subprocess
import sys

import pytest
from rich.console import Console

from mmrednet.benchmarks import memory as benchmark_memory
from mmrednet.benchmarks import memory_report
from mmrednet.utils import write_csv

from .tools import ROOT


def test_backbone_section_measures_the_saving(tmp_path):
    jobs = [benchmark_memory.Job('backbone', variant, 'cpu', 1, (64, 64), 1, 1)
            for variant in ('after', 'before', 'stem-kept', 'ResNet-50', 'cl-outputs')]
    rows = [benchmark_memory.measure(job) for job in jobs]
    by = {row.variant: row for row in rows}
    # Only the input of an involution is kept now; it was kernel and branch before.
    assert by['after'].involution_mb == by['stem-kept'].involution_mb == 0
    assert by['before'].involution_mb > 0
    assert by['ResNet-50'].involution_mb == 0
    # Each saving keeps less: kernels first, the stem on top.
    assert by['after'].kept_mb < by['stem-kept'].kept_mb < by['before'].kept_mb
    assert all(row.peak_mb > 0 and row.step_ms > 0 for row in rows)
    # Measured in one process here (the tool spawns one per model), the later models
    # reuse memory the earlier ones left resident: only >= 0 holds for all.
    assert all(row.rss_mb >= 0 for row in rows)
    # The same model but for the layout of its returned maps.
    assert by['cl-outputs'].kept_mb == by['after'].kept_mb
    assert by['after'].paired_time_ratio > 0

    summary = memory_report.summarize(rows)
    assert summary[0]['involution_vs_before'] == 0
    assert summary[0]['peak_vs_resnet'] == by['after'].peak_mb / by['ResNet-50'].peak_mb
    assert summary[0]['rss_vs_resnet'] == by['after'].rss_mb / by['ResNet-50'].rss_mb
    assert summary[0]['cl_outputs_peak_vs_resnet'] == \
        by['cl-outputs'].peak_mb / by['ResNet-50'].peak_mb
    console = Console(record=True, width=200)
    memory_report.print_tables(console, rows, summary)
    assert 'peak / ResNet-50' in console.export_text()
    memory_report.write_outputs(str(tmp_path), rows, summary)
    with open(tmp_path / 'memory.csv') as f:
        assert [r['variant'] for r in csv.DictReader(f)] == [r.variant for r in rows]
    with open(tmp_path / 'memory_ratios.csv') as f:
        ratios = list(csv.DictReader(f))
    assert list(ratios[0])[0] == 'section' and ratios[0]['section'] == 'backbone'
    assert float(ratios[0]['peak_vs_resnet']) == summary[0]['peak_vs_resnet']
    assert (tmp_path / 'memory.png').stat().st_size > 0


def test_resident_peak_sees_a_transient_allocation():
    """The high-water mark is reset first: memory resident before the call does not count,
    memory touched and freed inside it does. In a fresh process, as the tool measures: this
    one may hold freed memory that would serve the allocation without growing."""
    code = ('import torch\n'
            'from mmrednet.benchmarks.memory import resident_peak\n'
            'held = torch.ones(16 * 2**20 // 4)\n'
            'print(resident_peak(lambda: torch.ones(64 * 2**20 // 4).sum()))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, env={**os.environ, 'PYTHONPATH': ROOT})
    peak = float(out.stdout.split()[-1])
    # A few pages of the process may leave memory meanwhile.
    assert 0.95 * 64 * 2**20 <= peak < (64 + 16) * 2**20


def test_write_csv_names_the_file_when_there_is_nothing_to_write(tmp_path):
    with pytest.raises(ValueError, match='rows must not be empty.*empty.csv'):
        write_csv(str(tmp_path / 'empty.csv'), [])
    assert not (tmp_path / 'empty.csv').exists()
