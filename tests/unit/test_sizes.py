"""Files small enough to read in one sitting, and names that say one thing.

Issue 15's rules, held for every package of the project: no module of the
pure core (``mpa_sdn``) over 500 lines; no function outside the tests
over 60 lines unless a comment at its top says why it stays long (a table of
commands, one resource stack its steps share); and no module file name in
two places for two different things.  The command lines (``cli.py``) are one
kind of thing, each its package's; the benchmarks' names count too, as their
files sit beside the packages'.
"""

import ast
import collections
import io
import pathlib
import tokenize

from support.paths import ROOT

CORE = "mpa_sdn"
MAX_CORE_LINES = 500
MAX_FUNCTION_LINES = 60
# Names every package may have, each for its own one of the same kind.
SAME_KIND = {"__init__.py", "cli.py"}
BESIDE_THE_PACKAGES = ("benchmarks",)   # not packages, but files a reader finds by name


def packages(root: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p.parent for p in root.glob("*/__init__.py"))


def modules(folders: list[pathlib.Path]) -> list[pathlib.Path]:
    return sorted(p for folder in folders for p in folder.rglob("*.py")
                  if "__pycache__" not in p.parts)


def long_core_modules(root: pathlib.Path = ROOT) -> list[str]:
    found = []
    for path in modules([root / CORE]):
        count = len(path.read_text().splitlines())
        if count > MAX_CORE_LINES:
            found.append(f"{path.relative_to(root)}: {count} lines (at most {MAX_CORE_LINES})")
    return found


def _comment_lines(source: str) -> set[int]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {token.start[0] for token in tokens if token.type == tokenize.COMMENT}


def long_functions(root: pathlib.Path = ROOT) -> list[str]:
    """Functions over MAX_FUNCTION_LINES with no comment between their
    ``def`` (and docstring) and their first statement."""
    found = []
    for path in modules(packages(root)):
        source = path.read_text()
        comments = _comment_lines(source)
        for node in ast.walk(ast.parse(source, str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            body = node.body
            if (len(body) > 1 and isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                body = body[1:]   # the docstring
            says_why = any(node.lineno < line < body[0].lineno for line in comments)
            if length > MAX_FUNCTION_LINES and not says_why:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {node.name} is "
                             f"{length} lines (at most {MAX_FUNCTION_LINES}, or a comment "
                             "at its top saying why)")
    return found


def names_in_two_places(root: pathlib.Path = ROOT) -> list[str]:
    places = collections.defaultdict(list)
    folders = packages(root) + [root / name for name in BESIDE_THE_PACKAGES
                                if (root / name).is_dir()]
    for path in modules(folders):
        if path.name not in SAME_KIND:
            places[path.name].append(str(path.relative_to(root)))
    return [f"{name}: {', '.join(paths)}" for name, paths in sorted(places.items())
            if len(paths) > 1]


def test_no_module_of_the_core_is_over_500_lines():
    found = long_core_modules()
    assert not found, "\n".join(found)


def test_no_function_is_over_60_lines_without_saying_why():
    found = long_functions()
    assert not found, "\n".join(found)


def test_no_module_name_is_in_two_places():
    found = names_in_two_places()
    assert not found, "rename one of each (git mv), for what it holds:\n" + "\n".join(found)


def test_the_checks_name_each_breach(tmp_path):
    def write(relative, text):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    statements = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    for package in (CORE, "mpa_mn"):
        write(f"{package}/__init__.py", "")
        write(f"{package}/cli.py", "")
    write(f"{CORE}/big.py", "x = 1\n" * (MAX_CORE_LINES + 1))
    write(f"{CORE}/state.py", "def long():\n" + statements)
    write("mpa_mn/state.py", 'def long():\n    """Says what."""\n    # Says why.\n'
          + statements)
    write("benchmarks/big.py", "def long():\n" + statements)
    assert long_core_modules(tmp_path) == [
        f"{CORE}/big.py: {MAX_CORE_LINES + 1} lines (at most {MAX_CORE_LINES})"]
    assert long_functions(tmp_path) == [
        f"{CORE}/state.py:1: long is {MAX_FUNCTION_LINES + 1} lines (at most "
        f"{MAX_FUNCTION_LINES}, or a comment at its top saying why)"]
    assert names_in_two_places(tmp_path) == [
        f"big.py: benchmarks/big.py, {CORE}/big.py", f"state.py: mpa_mn/state.py, {CORE}/state.py"]
