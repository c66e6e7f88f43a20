"""The package's rooms import downwards only, and nothing imports in a circle: read from the source."""
import ast
from pathlib import Path

from nbgrader.preprocessors import ClearHiddenTests

from graders.course.coursedir import Course
from graders.grading.executor import Job, SandboxExecutor
from graders.inside import hidden
from graders.isolation import sandbox

PACKAGE = Path(__file__).resolve().parents[1] / "graders"
# lowest first: a room may import its own and lower rooms, never a higher one
LAYERS = [("graders.errors", "graders.logs", "graders.files", "graders.data", "graders.course"), ("graders.isolation",),
          ("graders.inside",), ("graders.grading",),
          ("graders.edges", "graders.outputs"), ("graders.demo", "graders.__main__")]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set:
    """Every graders module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("graders")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("graders"):
            for alias in node.names:  # `from graders.grading import batch` imports the module graders.grading.batch
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file()
                          else node.module)
    return found


def layer(module: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if any(module == r or module.startswith(r + ".") for r in rooms))


GRAPH = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def test_every_module_is_in_a_room():
    for module in GRAPH:
        if module not in ("graders",) and module.count(".") == 1 and module.split(".")[1] not in ("errors", "logs", "files", "data", "demo", "__main__"):
            assert Path(PACKAGE, module.split(".")[1]).is_dir(), f"{module}: put it in one of the rooms"
        assert module == "graders" or layer(module) is not None


def test_no_room_imports_a_higher_one():
    upward = [(m, i) for m, found in GRAPH.items() if m != "graders"
              for i in found if i in GRAPH and i != "graders" and layer(i) > layer(m)]
    assert not upward, upward


def test_no_import_cycle():
    def visit(module, path):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        for imported in GRAPH.get(module, ()):
            if imported in GRAPH and imported != module:
                visit(imported, path + [module])
    for module in GRAPH:
        visit(module, [])


def test_the_layer_test_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from graders.grading import batch\n    import graders.course.status\n")
    assert imports(source) == {"graders.grading.batch", "graders.course.status"}


def test_hidden_delimiters_come_from_the_course_configuration(tmp_path):
    """The runner's split (through the executor's command line) and feedback's redaction read the same."""
    assert (hidden.BEGIN, hidden.END) == (ClearHiddenTests().begin_test_delimeter, ClearHiddenTests().end_test_delimeter)
    (tmp_path / "nbgrader_config.py").write_text('c = get_config()\nc.ClearHiddenTests.begin_test_delimeter = "SECRET BELOW"\n')
    delimiters = Course(tmp_path).hidden_delimiters()
    assert delimiters == ("SECRET BELOW", "END HIDDEN TESTS")
    assert hidden.split("a = 1\n# SECRET BELOW\nassert a\n", *delimiters) == ("a = 1\n", "assert a\n")
    executor = SandboxExecutor(sandbox.NoSandbox(), sandbox.Limits(), 30, "", tmp_path, {}, {}, delimiters)
    argv = executor.argv(Job("s", tmp_path, ["one"]))
    assert argv[argv.index("--hidden-delimiters") + 1:][:2] == ["SECRET BELOW", "END HIDDEN TESTS"]


def test_no_module_over_400_lines_and_the_batch_class_under_150():
    """Rooms that say what they hold: a module past 400 lines holds two concerns; Batch only orders
    the steps (its pools, its skip rule and each student's record live beside it)."""
    long = {module: lines for module, lines in ((module_name(p), len(p.read_text().splitlines())) for p in PACKAGE.rglob("*.py"))
            if lines > 400}
    assert not long, long
    source = (PACKAGE / "grading" / "batch.py").read_text()
    batch = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == "Batch")
    assert batch.end_lineno - batch.lineno + 1 < 150, batch.end_lineno - batch.lineno + 1
