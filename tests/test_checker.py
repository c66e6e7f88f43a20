"""The checker reads only what a check needs, and what a test cell is comes from the gradebook.

A student's kernel writes what it likes where it can (its HOME, /tmp, the export folder) and may
rewrite the export manifest; a submission may edit the nbgrader metadata of its test cells. Through
the sandboxed runner and through `python -m graders autograde` (real nbgrader, real kernels), none of
it changes what the checker imports, loads or reads, or keeps a hidden part out of the checker.
"""
import copy
import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import course
from graders import data
from graders.grading import settings
from graders.inside import checker_env
from graders.isolation import sandbox

# Run by the payload, wherever it runs; it marks only a process that is not a kernel (the checker).
PAYLOAD = """import builtins, os
if 'JPY_PARENT_PID' not in os.environ:
    open('/submission/PWNED-' + str(os.getpid()), 'w').write('ran')
    builtins.abs = lambda number: 0.0
"""

PLANT = f"""import gzip, json, os, sys
PAYLOAD = {PAYLOAD!r}
open('/tmp/payload.py', 'w').write(PAYLOAD)
def put(path, text, mode='w'):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as stream:
        stream.write(text)
# dask (imported by `distributed`) reads ~/.config/dask: a logging config can name a callable
put('/tmp/.config/dask/pwn.yaml', "logging:\\n  version: 1\\n  handlers:\\n    pwn:\\n      '()': runpy.run_path\\n"
    "      path_name: /tmp/payload.py\\n  root:\\n    handlers: [pwn]\\n")
put('/tmp/.keras/keras.json', json.dumps({{"floatx": "float16", "epsilon": 0.5, "backend": "tensorflow"}}))
for folder in (os.environ.get('MPLCONFIGDIR', '/tmp/matplotlib'), '/tmp/.config/matplotlib'):
    put(folder + '/matplotlibrc', 'backend: module://payload\\n')
put('/tmp/.ipython/profile_default/startup/00-pwn.py', PAYLOAD)
site = f'/tmp/.local/lib/python{{sys.version_info[0]}}.{{sys.version_info[1]}}/site-packages'
put(site + '/pwn.pth', 'import runpy; runpy.run_path("/tmp/payload.py")\\n')
for folder in (site, '/tmp', '/dev/shm', '/submission'):
    for module in ('sitecustomize', 'usercustomize', 'payload', 'distributed'):
        put(f'{{folder}}/{{module}}.py', PAYLOAD)
# keras' dataset cache: ten fake Fashion-MNIST images (keras checks no digest for these files)
for name, header, size in (('train-labels-idx1-ubyte', 8, 1), ('train-images-idx3-ubyte', 16, 784),
                           ('t10k-labels-idx1-ubyte', 8, 1), ('t10k-images-idx3-ubyte', 16, 784)):
    put(f'/tmp/.keras/datasets/fashion-mnist/{{name}}.gz', gzip.compress(bytes(header + 10 * size)), 'wb')
try:
    os.makedirs({checker_env.NOWHERE!r})
    print('MADE NOWHERE')
except OSError as error:
    print('nowhere refused:', type(error).__name__)
import numpy as np
np.save('/submission/real.npy', np.array([42]))
# every manifest the kernel writes: entries the checks do not read, lying kinds and file names
import graders.inside.artifacts as _artifacts
_export = _artifacts.export
def _lying_export(namespace, names, folder):
    _export(namespace, names, folder)
    path = os.path.join(folder, 'manifest.json')
    manifest = json.load(open(path))
    manifest.update({{name: {{'kind': 'module', 'name': name}} for name in ('distributed', 'payload', 'sitecustomize')}})
    manifest['unread'] = {{'kind': 'exec', 'code': 'print(1)'}}
    if 'arr' in manifest:
        manifest['arr'] = {{'kind': 'array', 'file': '../../../../submission/real.npy'}}
    if 'absolute' in manifest:
        manifest['absolute'] = {{'kind': 'array', 'file': '/submission/real.npy'}}
    if 'linked' in manifest:
        os.remove(os.path.join(folder, 'linked.npy'))
        os.symlink('/submission/real.npy', os.path.join(folder, 'linked.npy'))
    json.dump(manifest, open(path, 'w'))
_artifacts.export = _lying_export
import numpy as solver
answer = 41
arr = absolute = linked = np.array([41])
"""

# grade id: hidden part (the public part is empty)
CHECKS = {
    "t_answer": "assert abs(answer - 42) < 0.5, 'answer is not 42'",
    "t_module": "import numpy\nassert solver == numpy and solver.__name__ == 'numpy' and solver is not numpy, repr(solver)",
    "t_path": "assert arr.tolist() == [42], 'arr is not [42]'",
    "t_absolute": "assert absolute.tolist() == [42], 'absolute is not [42]'",
    "t_linked": "assert linked.tolist() == [42], 'linked is not [42]'",
    "t_keras": "import keras\nassert (keras.config.floatx(), keras.config.epsilon()) == ('float32', 1e-07), keras.config.floatx()",
    "t_fashion": "from graders.data import test_set\nassert len(test_set('fashion_mnist')[1]) == 5000, 'not the real test set'",
    "t_home": "import os\nassert os.environ['HOME'].startswith('/tmp/graders-checker-') and os.environ['XDG_CONFIG_HOME'] == "
              "os.environ['HOME'] and 'JPY_PARENT_PID' not in os.environ, os.environ['HOME']",
}
EXPECTED = {"t_answer": ("AssertionError", "answer is not 42"), "t_module": None,
            "t_path": ("AssertionError", "arr is not [42]"), "t_absolute": ("AssertionError", "absolute is not [42]"),
            "t_linked": ("HiddenCheckError", "linked could not be checked: linked.npy is not a plain file of the export"),
            "t_keras": None, "t_fashion": None, "t_home": None}


def graded(grade_id, hidden_part):
    cell = new_code_cell(f"# {grade_id}\n### BEGIN HIDDEN TESTS\n{hidden_part}\n### END HIDDEN TESTS\n", id=grade_id)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": grade_id, "points": 1}
    return cell


@pytest.mark.parametrize("way", ["root", "user namespace"])
def test_nothing_the_kernel_writes_changes_what_the_checker_imports_loads_or_reads(tmp_path, way):
    """In the sandbox (HOME=/tmp for the kernel): config for dask, keras, matplotlib and IPython, a
    .pth, sitecustomize and look-alike modules, a fake keras dataset cache, a manifest with entries no
    check reads, modules to import and lying file names: every check gives what honest exports give,
    and nothing of the student's ran in the checker."""
    if not data.cache_path("fashion_mnist").is_file():
        pytest.skip("needs the offline Fashion-MNIST (scripts/setup)")
    isolation = sandbox.RootSandbox() if way == "root" else sandbox.UserNamespaceSandbox()
    try:
        isolation.check()
    except sandbox.SandboxUnavailable as error:
        pytest.skip(f"no {way} sandbox here: {error}")
    if way == "user namespace" and any(Path(sys.prefix).resolve().is_relative_to(folder) for folder in ("/tmp", "/dev/shm")):
        pytest.skip("the virtualenv is under /tmp: in a user namespace the folders above it are the kernel's, so the "
                    "checker drops it from its path and fails closed (docs/security.md); tests/test_ordinary_user.py "
                    "runs this way from a home folder")
    nb = new_notebook(cells=[new_code_cell(PLANT, id="attack")] + [graded(i, code) for i, code in CHECKS.items()])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(tmp_path / "one.ipynb"))
    argv = isolation.python_module("graders.inside.run_notebook", "one.ipynb", "--preload", "numpy", "--sandboxed",
                                   "--cell-timeout", "120", "--test-cells", json.dumps({"one": list(CHECKS)}))
    outcome = isolation.run(argv, tmp_path, sandbox.Limits(wall_seconds=300), data.students_dir(), settings.thread_env(1))
    assert outcome.returncode == 0, outcome.output
    executed = nbformat.read(str(tmp_path / "one.executed.ipynb"), as_version=4)
    attack = executed.cells[0].outputs
    assert not [o for o in attack if o.output_type == "error"], attack
    assert "nowhere refused" in "".join(o.get("text", "") for o in attack)
    found = {}
    for cell in executed.cells[1:]:
        errors = [(o.ename, o.evalue) for o in cell.outputs if o.output_type == "error"]
        found[cell.id] = errors[0] if errors else None
    assert found == EXPECTED
    assert not list(tmp_path.glob("PWNED-*")), "the student's payload ran outside its kernel"
    assert any(item.get("check_cpu_seconds") is not None for item in outcome.report)  # the checker ran them


# -- edited nbgrader metadata on the test cells: the gradebook decides ---------------------------------------

# In the answer cell: the kernel notes whether any cell it is given holds a hidden line; a last cell says.
WATCH = """_seen = []
get_ipython().events.register("pre_run_cell", lambda info: _seen.append(
    "BEGIN HIDDEN TESTS" in (info.raw_cell or "") or "n_parameters == 307300" in (info.raw_cell or "")))
"""
SAY = 'print("HIDDEN SEEN:", any(_seen))'
TESTS = ["q1_test", "q2_test", "q3_model_test", "q3_answer_test"]
VARIANTS = {  # student: what is done to the metadata of every test cell
    "unlocked": {"locked": False},
    "unlocked-not-graded": {"locked": False, "grade": False},
    "marked-as-answers": {"solution": True, "locked": False},
    "no-points": {"locked": False, "points": 0},
    "markdown": "markdown",
    "no-metadata": None,
    "duplicated": "duplicated",  # an unlocked copy of Q1's test cell before the answer, the original unlocked too
    "swapped": "swapped",  # Q1's answer and test cells trade grade ids
}


def variant(reference, change):
    notebook = copy.deepcopy(reference)
    notebook.cells.insert(0, new_code_cell(WATCH, id="watch"))
    by_id = {cell.get("id"): cell for cell in notebook.cells}
    if change == "duplicated":
        copied = copy.deepcopy(by_id["q1_test"])
        copied.id = "q1_test_copy"
        notebook.cells.insert(notebook.cells.index(by_id["q1_answer"]), copied)
        change = {"locked": False}
    if change == "swapped":
        answer, test = by_id["q1_answer"].metadata["nbgrader"], by_id["q1_test"].metadata["nbgrader"]
        answer["grade_id"], test["grade_id"] = test["grade_id"], answer["grade_id"]
        change = {}
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") not in TESTS:
            continue
        if change is None:
            del cell.metadata["nbgrader"]
        elif change == "markdown":
            cell.cell_type = "markdown"
            for key in ("outputs", "execution_count"):
                cell.pop(key, None)
        else:
            meta.update(change)
    notebook.cells.append(new_code_cell(SAY, id="say"))
    return notebook


@pytest.fixture(scope="module")
def edited_metadata(tmp_path_factory):
    from graders.grading import batch
    directory = course.copy_course(tmp_path_factory.mktemp("metadata") / "course")
    course.nbgrader(directory, "generate_assignment", course.ASSIGNMENT)
    release = course.read_notebook(directory / "release" / course.ASSIGNMENT / "check_your_learning.ipynb")
    reference = course.read_notebook(directory / "source" / course.ASSIGNMENT / "check_your_learning.ipynb")
    for cell in reference.cells:  # what a student hands in: the released test cells (no hidden part)
        released = next((c for c in release.cells if c.get("id") == cell.get("id")), None)
        if (cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in TESTS) and released is not None:
            cell.source = released.source
    course.submit(directory, "honest", {"check_your_learning": variant(reference, {})})
    for student, change in VARIANTS.items():
        course.submit(directory, student, {"check_your_learning": variant(reference, change)})
    results = batch.Batch(directory, course.ASSIGNMENT, sandbox.Limits(wall_seconds=300, memory_bytes=3 << 30),
                          workers=2).run()
    return directory, {r.student: r for r in results}


@pytest.mark.parametrize("student", ["honest", *VARIANTS])
def test_edited_metadata_on_test_cells_never_brings_a_hidden_part_into_the_kernel(edited_metadata, student):
    """Whatever a submission says of its test cells, a hidden part runs in the checker or nowhere: the
    kernel never sees a hidden line, and every test cell nbgrader grades was checked by the checker."""
    directory, results = edited_metadata
    result = results[student]
    if result.status == "invalid notebook":  # nbgrader refused it before any kernel ran: nothing seen
        return
    assert result.status in ("missing notebook", "test cell deleted"), result  # mnist_exercise not handed in
    executed = course.read_notebook(directory / "autograded" / student / course.ASSIGNMENT / "check_your_learning.ipynb")
    said = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert said == "HIDDEN SEEN: False\n", (student, said)
    manifest = json.loads((directory / ".graders" / course.ASSIGNMENT / "exports" / student / "manifest.json").read_text())
    checked = {executed.cells[index].metadata["nbgrader"]["grade_id"] for index in manifest["checked"]["check_your_learning"]}
    graded = {cell.metadata["nbgrader"]["grade_id"] for cell in executed.cells
              if cell.metadata.get("nbgrader", {}).get("grade_id") in TESTS and "BEGIN HIDDEN TESTS" in cell.source}
    assert checked == graded, (student, checked, graded)  # the checker ran every hidden part there is
    assert graded == set(TESTS) or student == "no-metadata", graded  # (without its metadata a cell is the student's)
    scores = {cell: grade[0] for (name, cell), grade in course.grades(directory)[student].items() if name == "check_your_learning"}
    assert all(scores[cell] == 0 or cell in checked for cell in TESTS), scores  # no point from a kernel-run hidden part


def test_the_honest_student_keeps_full_marks(edited_metadata):
    directory, results = edited_metadata
    scores = {cell: grade for (name, cell), grade in course.grades(directory)["honest"].items() if name == "check_your_learning"}
    assert all(score == maximum for cell, (score, maximum, _) in scores.items() if cell in TESTS), scores


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_a_manifest_is_a_claim_the_checker_validates(tmp_path):
    """Only the names asked for, kinds from the closed list, files named after the name, plain and in the folder."""
    import numpy as np
    from graders.inside import artifacts
    np.save(tmp_path / "arr.npy", np.array([1]))
    np.save(tmp_path / "other.npy", np.array([2]))
    np.savez(tmp_path / "zipped.npy", a=np.array([3]))  # an .npz under an .npy name
    (tmp_path / "linked.npy").symlink_to(tmp_path / "other.npy")
    manifest = {"arr": {"kind": "array", "file": "other.npy"}, "linked": {"kind": "array", "file": "linked.npy"},
                "zipped": {"kind": "array"}, "code": {"kind": "exec", "code": "print(1)"}, "np": {"kind": "module", "name": "numpy"},
                "bad": {"kind": "module", "name": "os; import sys"}, "said": {"kind": "refused", "why": "it is a \x1b[2Jfunction\n"},
                "unread": {"kind": "module", "name": "distributed"}, "plain": ["not", "a", "dict"]}
    (tmp_path / artifacts.MANIFEST).write_text(json.dumps(manifest))
    names = ["arr", "linked", "zipped", "code", "np", "bad", "said", "plain", "missing"]
    values, refused = artifacts.load(str(tmp_path), names)
    assert values["arr"].tolist() == [1]  # arr.npy, whatever the manifest's file says
    assert values["np"] == np and values["np"] is not np and "distributed" not in sys.modules
    assert set(refused) == {"linked", "zipped", "code", "bad", "said", "plain"} and "unread" not in values
    assert refused["said"] == "it is a  [2Jfunction " and refused["code"].startswith("code could not be checked")
    link = tmp_path.parent / f"{tmp_path.name}-link"
    link.symlink_to(tmp_path)  # the folder itself reached through a link
    with pytest.raises(artifacts.Refused):  # run_check: the names were not exported
        artifacts.load(str(link), ["arr"])


def test_the_sealed_checker_has_its_own_environment_and_no_writable_import_path(tmp_path):
    import os
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # as the zygote forks the checker
        code = 1
        try:
            os.environ.update(PYTHONPATH=str(tmp_path), DASK_CONFIG=str(tmp_path), SECRET="x")
            sys.path.insert(0, str(tmp_path))
            checker_env.seal([str(tmp_path)])
            home = checker_env.fresh_home()
            os.write(write, json.dumps({"env": dict(os.environ), "path": sys.path, "home": home,
                                        "made": os.path.isdir(checker_env.NOWHERE)}).encode())
            checker_env.remove(home)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as stream:
        seen = json.loads(stream.read())
    assert os.waitpid(pid, 0)[1] == 0
    assert not {"PYTHONPATH", "SECRET"} & set(seen["env"]) and seen["env"]["DASK_CONFIG"] == seen["home"]
    assert seen["env"]["HOME"] == seen["env"]["KERAS_HOME"] == seen["home"] and not os.path.exists(seen["home"])
    assert str(tmp_path) not in seen["path"] and "" not in seen["path"] and not seen["made"]
    assert seen["env"]["ONIONS_DATA_DIR"] == str(data.cache_dir()) or "ONIONS_DATA_DIR" in os.environ


def test_a_model_whose_weights_name_a_file_outside_the_export_is_refused(tmp_path):
    """HDF5 can keep a dataset's bytes in another file, by path (external storage): a .keras file whose
    weights did so would have the checker read a file of the kernel's choosing (/proc/self/...) into
    the model. keras (>= 3.12, pinned) refuses it, and so the checker does."""
    import io
    import zipfile

    import h5py
    import keras
    import numpy as np
    from graders.inside import artifacts
    (tmp_path / "outside.bin").write_bytes(np.arange(8, dtype="float32").tobytes())
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(8, use_bias=False)(inputs))
    artifacts.export({"model": model}, ["model"], str(tmp_path / "cell"))
    with zipfile.ZipFile(tmp_path / "cell" / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    weights = io.BytesIO()
    with h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as honest, h5py.File(weights, "w") as forged:
        def copy(name, item):
            if isinstance(item, h5py.Dataset):
                forged.create_dataset(name, shape=item.shape, dtype=item.dtype, external=[(str(tmp_path / "outside.bin"), 0, 32)])
            else:
                forged.require_group(name)
        honest.visititems(copy)
    members["model.weights.h5"] = weights.getvalue()
    with zipfile.ZipFile(tmp_path / "cell" / "model.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    values, refused = artifacts.load(str(tmp_path / "cell"), ["model"])
    assert "model" not in values and "could not be loaded" in refused["model"], refused
