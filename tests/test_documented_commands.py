"""Every command of the README, get_started and the model zoo's "How to use" works as written.

The quick ones run for real: the Python snippets (inference with random weights on a made
image where the page names a trained checkpoint), ``python -c``, ``mim search``. The long
ones (demos, training, make targets) are checked for what they name: every tool and script
exists, every tool's argparse accepts the documented options, ``make -n TARGET`` works and
the scripts it runs exist, every config exists, every pip extra is declared. A command of a
kind this walker does not know fails, so that a new command is checked too.
"""
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from configparser import ConfigParser
from typing import List, NamedTuple, Optional, Tuple

import pytest

from .seg_helpers import ROOT
from .test_mim import MIM, _env, _listed, _model_names, installed  # noqa: F401 (a fixture)

PAGES = ('README.md', 'docs/get_started.md', 'configs/rednet/README.md')
# Commands that change the machine or the environment: what they name is all that is checked.
SETUP = ('git', 'cd', 'source', 'ln')
BLOCK = re.compile(r'^```(\w*)\n(.*?)^```$', re.M | re.S)


class Walk(NamedTuple):
    problems: List[str]                     # what is wrong with the page's commands
    runs: List[Tuple[List[str], str]]       # (make or bash argv, where) to dry-run
    tools: List[Tuple[str, List[str]]]      # (tool, argv) whose command line must parse
    python: List[Tuple[str, Optional[str]]]  # (code, the output the page promises)
    mim_searches: List[List[str]]           # mim arguments to run


def _read(page: str) -> str:
    with open(osp.join(ROOT, page)) as f:
        return f.read()


def shell_commands(block: str) -> List[List[str]]:
    """The commands of a shell block as argv lists: continuations joined, comments dropped."""
    commands, pending = [], ''
    for line in block.splitlines():
        pending = f'{pending}\n{line}' if pending else line
        if pending.endswith('\\'):
            pending = pending[:-1]
            continue
        try:
            argv = shlex.split(pending, comments=True)
        except ValueError:  # a quote spans lines
            continue
        pending = ''
        commands += [part for part in _split_on(argv, '&&') if part]
    assert not pending, f'unterminated command: {pending!r}'
    return commands


def _split_on(argv: List[str], separator: str) -> List[List[str]]:
    parts, current = [], []
    for token in argv:
        if token == separator:
            parts.append(current)
            current = []
        else:
            current.append(token)
    return parts + [current]


def _extras() -> set:
    parser = ConfigParser()
    parser.read(osp.join(ROOT, 'setup.cfg'))
    return set(parser['options.extras_require'])


def _check_paths(argv: List[str], problems: List[str], where: str) -> None:
    for token in argv:
        if re.fullmatch(r'(configs|tools)/[\w./-]+\.(py|sh|yml)', token) and \
                not osp.isfile(osp.join(ROOT, token)):
            problems.append(f'{where}: no file {token}')


def dry_runs(walk: 'Walk') -> List[str]:
    """The problems of the page's make targets (``make -n``: every target and variable is
    accepted, every script of the recipe exists) and shell scripts (``bash -n``)."""
    problems = []
    for argv, where in walk.runs:
        if argv[0] == 'bash':
            proc = subprocess.run(['bash', '-n', osp.join(ROOT, argv[1])], capture_output=True,
                                  text=True, check=False)
            if proc.returncode:
                problems.append(f'{where}: {proc.stderr.strip()}')
            continue
        proc = subprocess.run(['make', '-n', *argv[1:], f'PY={sys.executable}'], cwd=ROOT,
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            problems.append(f'{where}: make -n fails: {proc.stderr.strip()[-300:]}')
        for script in set(re.findall(r'\btools/[\w./-]+\.(?:sh|py)\b', proc.stdout)):
            if not osp.isfile(osp.join(ROOT, script)):
                problems.append(f'{where}: its recipe runs {script}, which does not exist')
    return problems


def _check_pip(argv: List[str], problems: List[str], where: str) -> None:
    makefile = _read('Makefile')
    for token in argv[2:]:
        extras = re.fullmatch(r'\.\[([\w,]+)\]', token)
        if extras:
            unknown = set(extras.group(1).split(',')) - _extras()
            if unknown:
                problems.append(f'{where}: no extra {sorted(unknown)} in setup.cfg')
        elif '==' in token and token not in makefile:
            problems.append(f'{where}: {token} is not the version make install installs')


def walk(text: str, page: str) -> Walk:
    """The commands of ``text`` (a Markdown page), sorted into what to check and run."""
    walk = Walk([], [], [], [], [])
    for block in BLOCK.finditer(text):
        lang, body = block.groups()
        promised = re.match(r'\s*It prints `([^`]+)`', text[block.end():])
        if lang == 'python':
            walk.python.append((body, None))
            continue
        if lang not in ('bash', 'shell', 'sh'):
            continue
        for argv in shell_commands(body):
            while argv and re.fullmatch(r'[A-Z_]+=\S*', argv[0]):  # VAR=value prefixes
                argv = argv[1:]
            where = f'{page}: {shlex.join(argv)[:120]}'
            program = argv[0]
            if program in SETUP:
                continue
            if program == 'make':
                walk.runs.append((argv, where))
            elif program == 'pip':
                _check_pip(argv, walk.problems, where)
            elif program == 'python' and argv[1] == '-c':
                walk.python.append((argv[2], promised.group(1) if promised else None))
            elif program == 'python' and argv[1].startswith('tools/'):
                _check_paths(argv[1:], walk.problems, where)
                if osp.isfile(osp.join(ROOT, argv[1])):
                    walk.tools.append((argv[1], argv[2:]))
            elif program == 'bash' and argv[1].startswith('tools/'):
                _check_paths(argv[1:], walk.problems, where)
                if osp.isfile(osp.join(ROOT, argv[1])):
                    walk.runs.append((argv, where))
            elif program == 'mim' and argv[1:3] == ['search', 'mmrednet']:
                walk.mim_searches.append(argv[1:])
            elif program == 'mim' and argv[1] in ('train', 'test') and argv[2] == 'mmrednet':
                if not any(name == argv[3] for _, _, names in os.walk(osp.join(ROOT, 'configs'))
                           for name in names):
                    walk.problems.append(f'{where}: no config named {argv[3]}')
            else:
                walk.problems.append(f'{where}: a command this test does not know how to check')
    return walk


WALKS = {page: walk(_read(page), page) for page in PAGES}


@pytest.mark.parametrize('page', PAGES)
def test_documented_commands_name_what_exists(page):
    assert WALKS[page].problems + dry_runs(WALKS[page]) == []


# One process parses every tool's command line: argparse's parse_args is replaced by one
# that parses, then stops the tool before it does anything.
PARSE_ONLY = r'''
import argparse, json, runpy, sys
class Parsed(Exception):
    pass
parse_args = argparse.ArgumentParser.parse_args
def parse_only(self, args=None, namespace=None):
    parse_args(self, args, namespace)  # SystemExit(2) on an option it does not take
    raise Parsed
argparse.ArgumentParser.parse_args = parse_only
results = []
for tool, argv in json.loads(sys.argv[1]):
    sys.argv = [tool, *argv]
    try:
        runpy.run_path(tool, run_name='__main__')
        results.append('ran without parsing a command line')
    except Parsed:
        results.append(None)
    except SystemExit as exit:
        results.append(f'exits with {exit.code}')
print(json.dumps(results))
'''


def parse_tool_commands(tools: List[Tuple[str, List[str]]]) -> List[str]:
    """``tool argv: why`` for each command line its tool's argparse refuses."""
    proc = subprocess.run([sys.executable, '-c', PARSE_ONLY, json.dumps(tools)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return [f'{tool} {shlex.join(argv)}: {why}\n{proc.stderr[-1500:]}'
            for (tool, argv), why in zip(tools, results, strict=True) if why]


def test_documented_tool_command_lines_parse():
    tools = [call for page in PAGES for call in WALKS[page].tools]
    assert {'tools/train.py', 'tools/test.py'} <= {tool for tool, _ in tools}
    assert parse_tool_commands(tools) == []


def _runnable(code: str, image: str, out_dir: str) -> str:
    """``code`` with what a page's reader has after training replaced by what a test has:
    no checkpoint (random weights), a made image, a temporary output folder."""
    code = re.sub(r"'(?:work_dirs/[^']*\.pth|paddleclas://[^']*)'", 'None', code)
    code = re.sub(r"'(?:data/[^']*\.png|your_image\.jpg)'", repr(image), code)
    return re.sub(r"'work_dirs/[^']*'", repr(out_dir), code)


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    import numpy as np
    from PIL import Image
    path = str(tmp_path_factory.mktemp('image') / 'image.png')
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize('page, index', [(page, i) for page in PAGES
                                         for i in range(len(WALKS[page].python))])
def test_documented_python_runs(page, index, image, tmp_path):
    code, promised = WALKS[page].python[index]
    proc = subprocess.run([sys.executable, '-c', _runnable(code, image, str(tmp_path))],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1'),
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if promised is not None:
        assert proc.stdout.strip() == promised


def test_documented_mim_searches_run(installed, tmp_path):  # noqa: F811 (the fixture)
    searches = [s for page in PAGES for s in WALKS[page].mim_searches]
    assert ['search', 'mmrednet'] in searches
    for args in searches:
        proc = subprocess.run([MIM, *args], env=_env(installed), cwd=tmp_path,
                              capture_output=True, text=True, check=False, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert _listed(proc.stdout) <= set(_model_names()) and _listed(proc.stdout)


def test_the_data_folders_are_the_configs():
    """get_started's data tree is where the zoo configs read their data."""
    from mmengine.config import Config
    tree = re.search(r'```text\n(data\n.*?)```', _read('docs/get_started.md'), re.S).group(1)
    for name, config in (('coco', 'retinanet_rednet50_fpn_1x_coco.py'),
                         ('cityscapes', 'fpn_rednet50_4xb2-80k_cityscapes-512x1024.py'),
                         ('imagenet', 'rednet50_64xb32-warmup-coslr-130e_imagenet.py')):
        assert re.search(rf'^\S+ {name} ', tree, re.M), name
        loader = Config.fromfile(osp.join(ROOT, 'configs', 'rednet', config)).train_dataloader
        dataset = loader.dataset.get('dataset', loader.dataset)  # inside a wrapper or not
        assert dataset.data_root.rstrip('/') == f'data/{name}', config
        if name == 'coco':
            assert osp.basename(dataset.ann_file) in tree
            assert dataset.data_prefix.img.rstrip('/') in tree


def test_the_walker_catches_broken_commands(tmp_path):
    """What the tests above would say about commands that do not work as written."""
    page = '\n'.join([
        '```bash',
        'python tools/train.py configs/demo/rednet26-tiny_1xb32-20e_shapes-imagenet-64x64.py \\',
        '    --work-dir work_dirs/x --no-such-option',
        'python tools/train.py configs/rednet/no_such_config.py',
        'bash tools/no_such_script.sh CONFIG 8',
        'make no-such-target',
        'pip install -e ".[no_such_extra]"',
        'pip install mmdet==9.9.9',
        'mim train mmrednet no_such_config.py',
        'curl https://example.com',
        '```', ''])
    result = walk(page, 'scratch.md')
    problems = result.problems + dry_runs(result)
    assert len(problems) == 7, problems
    for expected in ('no file configs/rednet/no_such_config.py', 'no file tools/no_such_script.sh',
                     'make -n fails', "no extra ['no_such_extra']", 'mmdet==9.9.9',
                     'no config named no_such_config.py', 'does not know'):
        assert any(expected in problem for problem in problems), expected
    refused = parse_tool_commands(result.tools[:1])
    assert len(refused) == 1 and '--no-such-option' in refused[0]
