"""The README stays short and true, and the Markdown links outside the Sphinx build resolve.

Sphinx (``make docs``, warnings as errors) checks the links inside ``docs/``; the
README and the model-zoo page are read on GitHub, so their links are checked here:
every relative link names an existing file, and every ``#anchor`` a heading of its page
(GitHub's slugs).
"""
import os.path as osp
import re

import pytest

from .seg_helpers import ROOT

LINK = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)')
PAGES_READ_ON_GITHUB = ('README.md', 'configs/rednet/README.md')


def _read(path: str) -> str:
    with open(osp.join(ROOT, path)) as f:
        return f.read()


def _without_code(text: str) -> str:
    return re.sub(r'^```.*?^```', '', text, flags=re.M | re.S)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(path: str) -> set:
    return {github_slug(m.group(1))
            for m in re.finditer(r'^#+ (.+)$', _without_code(_read(path)), flags=re.M)}


def test_github_slugs():
    assert github_slug('Demos (CPU, from nothing)') == 'demos-cpu-from-nothing'
    assert github_slug("The operator's design") == 'the-operators-design'
    assert github_slug('Key measured figures') == 'key-measured-figures'


@pytest.mark.parametrize('page', PAGES_READ_ON_GITHUB)
def test_relative_links_resolve(page):
    links = LINK.findall(_without_code(_read(page)))
    assert links
    broken = []
    for link in links:
        if re.match(r'[a-z]+://', link) or link.startswith('mailto:'):
            continue
        target, _, anchor = link.partition('#')
        path = osp.normpath(osp.join(osp.dirname(page), target)) if target else page
        if not osp.exists(osp.join(ROOT, path)):
            broken.append(f'{link}: no file {path}')
        elif anchor and (not path.endswith('.md') or anchor not in anchors(path)):
            broken.append(f'{link}: no heading #{anchor} in {path}')
    assert not broken, broken


def test_readme_is_a_few_screens():
    assert len(_read('README.md').splitlines()) <= 250


def test_quick_start_says_what_ci_runs():
    """The README's two commands are Makefile targets, and CI runs the README's test command."""
    readme, makefile, ci = _read('README.md'), _read('Makefile'), _read('.ci/run')
    assert 'make demo' in readme and 'make test' in readme
    assert re.search(r'^make test$', ci, flags=re.M)
    rules = dict(re.findall(r'^([\w-]+):(.*)$', makefile, flags=re.M))
    # make test: install (through lint and docs), lint, build the docs, then the tests.
    assert rules['test'].split() == ['lint', 'docs']
    assert rules['lint'].split() == rules['docs'].split() == rules['demo'].split() == ['install']
    assert '-E -W --keep-going -n' in makefile
    test_recipe = makefile.split('\ntest:', 1)[1].split('\n\n', 1)[0]
    assert 'pytest -q -n 2 tests' in test_recipe and 'pytest -q -n 2 tests' in readme
    demo_recipe = makefile.split('\ndemo:', 1)[1].split('\n\n', 1)[0]
    assert 'tools/run_demo.sh' in demo_recipe
    assert 'tools/run_cls_demo.sh' in _read('tools/run_demo.sh')  # "then the classification demo"


def test_every_docs_page_is_in_a_toctree():
    """Sphinx warns about orphans too; this names the missing page directly."""
    import glob
    index = _read('docs/index.md')
    pages = {osp.splitext(osp.relpath(p, osp.join(ROOT, 'docs')))[0]
             for p in glob.glob(osp.join(ROOT, 'docs', '**', '*.md'), recursive=True)
             if '_build' not in p} | {'api'}
    assert {p for p in pages if p != 'index' and p not in index} == set()
