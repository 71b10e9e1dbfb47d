"""The package's shape: imports flow one way, from the public face down
to the pure modules, and nothing inside the package imports its root."""
from __future__ import annotations

import ast
import pathlib
import typing

import pytest

PACKAGE = 'sprockets.mixins.http'
ROOT = pathlib.Path(__file__).resolve().parent.parent / 'sprockets' / \
    'mixins' / 'http'

# each module's layer: a module imports only from lower layers (and from
# its own subpackage); docs/design.rst draws the same picture
LAYERS: typing.Dict[str, float] = {
    '_version': 0, '_checks': 0, '_urls': 0, '_codings': 0, '_reasons': 0,
    '_content': 1, '_budget': 1,
    '_retry': 1.5,
    '_response': 2, '_tls': 2,
    '_transports': 3, '_redirects': 3, '_call': 3, '_otel': 3,
    '_streaming': 3,
    'aiohttp_client': 3.5,  # _transports._aiohttp reaches it by name
    '_observe': 4,
    '_attempt': 5,
    '_engine': 6, '_request': 6,
    '_mixin': 7,
    '_client': 8, 'testing': 8,
    '_cli': 9,  # its demo scripts testing.FakeUpstream
    '__main__': 10, '__init__': 11,
}


def package_modules() -> typing.Iterator[typing.Tuple[str, pathlib.Path]]:
    for path in sorted(ROOT.rglob('*.py')):
        parts = path.relative_to(ROOT).with_suffix('').parts
        yield '.'.join(parts), path


def top(name: str) -> str:
    """The top-level module of the package that `name` is in."""
    return name.split('.')[0]


def imported(path: pathlib.Path,
             module: str) -> typing.Iterator[typing.Tuple[int, str]]:
    """(line, module inside the package) for each import in `path`,
    including those under ``if typing.TYPE_CHECKING``; ``''`` stands for
    a name taken from the package root itself."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + '.'):
                    yield node.lineno, alias.name[len(PACKAGE) + 1:]
                elif alias.name == PACKAGE:
                    yield node.lineno, ''
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == 'sprockets.mixins' and any(
                    alias.name == 'http' for alias in node.names):
                yield node.lineno, ''
            elif node.module == PACKAGE:
                for alias in node.names:
                    name = alias.name
                    # a submodule (from the package import _retry), or a
                    # name of the root (from the package import LOGGER)
                    yield node.lineno, (name if name.startswith('_')
                                        or name == 'testing' else '')
            elif node.module.startswith(PACKAGE + '.'):
                yield node.lineno, node.module[len(PACKAGE) + 1:]


MODULES = list(package_modules())


def test_every_module_has_a_layer() -> None:
    """A new module gets its place in LAYERS (and in docs/design.rst)."""
    assert {top(name) for name, _ in MODULES} - set(LAYERS) == set()


@pytest.mark.parametrize('module, path', MODULES,
                         ids=[name for name, _ in MODULES])
def test_imports_flow_one_way(module: str, path: pathlib.Path) -> None:
    """A module imports only modules of lower layers, or of its own
    subpackage, and never the package root's names (__init__ imports
    everything; nothing imports it)."""
    own = top(module)
    climbing = []
    for line, target in imported(path, module):
        if target == '':
            if own != '__init__':
                climbing.append(f'line {line}: the package root')
            continue
        if top(target) == own:
            continue  # within a subpackage: _transports._curl -> _transports
        if LAYERS[top(target)] >= LAYERS[own]:
            climbing.append(f'line {line}: {target} (layer '
                            f'{LAYERS[top(target)]} >= {LAYERS[own]})')
    assert climbing == [], f'{module} imports upwards: {climbing}'


def test_the_root_defines_nothing() -> None:
    """__init__.py re-exports and defines no class or function."""
    tree = ast.parse((ROOT / '__init__.py').read_text(encoding='utf-8'))
    definitions = [node.name for node in tree.body if isinstance(
        node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    assert definitions == []
