"""The deployment guide's commands work as written: every tool, option and make target it
names exists, and the files it says the benchmark writes are the ones it writes."""
import os
import os.path as osp
import re
import subprocess
import sys

from .det_helpers import ROOT

GUIDE = osp.join(ROOT, 'docs', 'user_guides', 'deployment.md')


def _code_lines() -> list:
    """The lines of the guide's shell blocks, continuation lines joined."""
    with open(GUIDE) as f:
        blocks = re.findall(r'^```bash\n(.*?)^```', f.read(), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.replace('\\\n', ' ').split('\n')
            if line.strip()]


def test_every_tool_and_option_of_the_guide_exists():
    options = {}
    for line in _code_lines():
        line = line.split('#', 1)[0]
        match = re.match(r'python (tools/\S+\.py)(.*)', line)
        if match:
            options.setdefault(match.group(1), set()).update(
                re.findall(r'(?<![\w-])--[a-z][\w-]*', match.group(2)))
    assert {'tools/deployment/export_onnx.py', 'tools/deployment/export_aoti.py',
            'tools/test.py', 'tools/benchmark_deploy.py'} <= set(options)
    for tool, used in options.items():
        assert osp.isfile(osp.join(ROOT, tool)), tool
        done = subprocess.run([sys.executable, tool, '--help'], cwd=ROOT, capture_output=True,
                              text=True, check=False,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        assert done.returncode == 0, done.stderr[-2000:]
        missing = {option for option in used if option not in done.stdout}
        assert not missing, (tool, missing)


def test_every_make_target_of_the_guide_exists():
    with open(osp.join(ROOT, 'Makefile')) as f:
        targets = set(re.findall(r'^([\w-]+):', f.read(), flags=re.M))
    used = {m.group(1) for line in _code_lines() for m in [re.match(r'make ([\w-]+)', line)] if m}
    assert used and used <= targets, used - targets


def test_the_benchmark_files_the_guide_names_are_the_ones_it_writes():
    with open(GUIDE) as f:
        named = set(re.findall(r'`(\w+\.(?:csv|png))`', f.read()))
    with open(osp.join(ROOT, 'mmrednet', 'benchmarks', 'deploy.py')) as f:
        written = set(re.findall(r"'(\w+\.(?:csv|png))'", f.read()))
    assert named and named <= written, named - written
