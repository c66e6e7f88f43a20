"""Regrade after the hidden tests change, without running student code again (`autograde --recheck`).

Every grading keeps, per student, under .graders/<assignment>/exports/<student>/: each notebook's
exports packed by the runner (NAME.exports.tar.xz: what the hidden parts read, data only), the
notebook as executed (NAME.previous.ipynb), and a manifest: the fingerprint of what produced them
(the submission, the prepared notebooks with their test cells' hidden parts cut off, the
configuration, the limits, the code), the test cells the checker ran, and each file's digest. The
manifest's own digest goes into the batch state, so a pack or manifest changed since is seen.

A recheck job gives the sandbox the prepared notebooks (the new hidden parts, from the gradebook)
and these files; the runner starts no kernel, runs the new hidden parts on the exports and puts
their results in place of the old checks' outputs (graders.inside.run_notebook.recheck); nbgrader's
grade pass then records it as any grading. Whatever a recheck cannot reproduce exactly (no kept
exports, an altered file, another submission or public part, a hidden part that reads a name the
kernel never exported) is a full grading, with the reason in the summary.
"""
import functools
import hashlib
import json
import shutil
from pathlib import Path

import nbformat

from graders.course.coursedir import Course, files_under, hashed_files, limits_bytes
from graders.grading.executor import Job
from graders.inside import hidden, runner_api
from graders.inside.merge import RecheckError, merge
from graders.isolation import sandbox

MANIFEST = "manifest.json"


def folder(course: Course, assignment: str, student: str) -> Path:
    return course.work(assignment) / "exports" / student


@functools.cache
def _code() -> str:
    from graders.grading.cluster import code_fingerprint  # the same code and packages grade alike
    return code_fingerprint()


def fingerprint(course: Course, assignment: str, student: str, prepared: Path, notebooks: list,
                limits: sandbox.Limits, delimiters, tests: dict, grading_key: str = "") -> dict:
    """What the exports depend on: the submitted files, the prepared notebooks with each test
    cell's hidden part cut off (the kernel never ran it), nbgrader_config.py, the limits, the code,
    and the grading secret's key id (the kernel preprocessed the grading images in its order).
    The hidden parts are not in it: changing them is what a recheck is for. {part: digest}, so a
    full grading can say which part changed. `tests`: {notebook: its test cells' grade ids}, the gradebook's."""
    parts = {part: hashlib.sha256() for part in ("submission", "notebooks' public parts", "nbgrader_config.py", "limits", "code",
                                           "grading secret")}
    parts["submission"].update(hashed_files(course, files_under(course.folder("submitted", assignment, student))))
    for name in notebooks:
        cells = []
        for cell in nbformat.read(str(prepared / f"{name}.ipynb"), as_version=4).cells:
            source = hidden.split(cell.source, *delimiters)[0] if hidden.is_test_cell(cell, tests.get(name, ())) else cell.source
            meta = {key: value for key, value in (cell.get("metadata", {}).get("nbgrader") or {}).items()
                    if key != "checksum"}  # nbgrader's checksum covers the hidden part too
            cells.append([cell.get("id"), cell.cell_type, source, meta])
        parts["notebooks' public parts"].update(json.dumps([name, cells], sort_keys=True).encode())
    parts["nbgrader_config.py"].update((course.root / "nbgrader_config.py").read_bytes())
    parts["limits"].update(limits_bytes(limits))
    parts["code"].update(_code().encode())
    parts["grading secret"].update(grading_key.encode())
    return {part: digest.hexdigest() for part, digest in parts.items()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keep(store: Path, stage: Path, notebooks: list, packs: dict, produced_by: dict, diagnoses: dict,
         max_notebook_bytes: int) -> str:
    """After a full grading: move the runner's packs and copy the executed notebooks from the
    stage into `store`, with the manifest (which also holds the checks' diagnoses, for the checks a
    recheck does not run again); returns the manifest's digest (for the state), or ""
    when a pack is missing or not what the runner packed (nothing is kept then: no recheck)."""
    shutil.rmtree(store, ignore_errors=True)
    files, checked = {}, {}
    for name in notebooks:
        pack, executed = stage / f"{name}{runner_api.PACK}", stage / f"{name}.executed.ipynb"
        if name not in packs or not pack.is_file() or not executed.is_file() or _sha256(pack) != packs[name]["sha256"]:
            shutil.rmtree(store, ignore_errors=True)
            return ""
        if executed.stat().st_size > max_notebook_bytes:  # said on a recheck, which grades this student in full
            shutil.rmtree(store, ignore_errors=True)
            store.mkdir(parents=True)
            reason = (f"nothing kept: the executed {name} was {executed.stat().st_size >> 20} MB, "
                      f"over the {max_notebook_bytes >> 20} MB kept for a recheck (c.GradersBatch.kept_notebook_bytes)")
            manifest = json.dumps({"fingerprint": produced_by, "not kept": reason}, sort_keys=True).encode()
            (store / MANIFEST).write_bytes(manifest)
            return hashlib.sha256(manifest).hexdigest()
        store.mkdir(parents=True, exist_ok=True)
        shutil.move(pack, store / pack.name)
        shutil.copyfile(executed, store / f"{name}{runner_api.PREVIOUS}")
        files.update({pack.name: packs[name]["sha256"], f"{name}{runner_api.PREVIOUS}": _sha256(store / f"{name}{runner_api.PREVIOUS}")})
        checked[name] = packs[name]["checked"]
    manifest = json.dumps({"fingerprint": produced_by, "files": files, "checked": checked, "diagnoses": diagnoses},
                          sort_keys=True).encode()
    (store / MANIFEST).write_bytes(manifest)
    return hashlib.sha256(manifest).hexdigest()


class Plan:
    """What a recheck of one student does: `checks` (how many hidden parts changed, to run again in
    the sandbox), `merged` (each notebook with the old outputs, the changed checks' taken out),
    `carried` (the diagnoses of the checks that are not run again)."""

    def __init__(self):
        self.checks, self.merged, self.carried = 0, {}, {}


def plan(store: Path, recorded: str, produced_by: dict, prepared: Path, notebooks: list, delimiters, tests: dict):
    """(why, Plan): why is "" when the student can be rechecked, else why a full grading is needed
    (one line)."""
    try:
        raw = (store / MANIFEST).read_bytes()
    except OSError:
        return "no exports kept from the last grading", None
    if not recorded or hashlib.sha256(raw).hexdigest() != recorded:
        return "the kept exports' manifest is not the one recorded at grading", None
    manifest = json.loads(raw)
    if manifest.get("not kept"):
        return str(manifest["not kept"]), None
    kept = manifest.get("fingerprint") if isinstance(manifest.get("fingerprint"), dict) else {}
    changed = [part for part in produced_by if kept.get(part) != produced_by[part]]
    if changed:
        return f"changed since it was graded: {', '.join(changed)}", None
    expected = {f"{name}{suffix}" for name in notebooks for suffix in (runner_api.PACK, runner_api.PREVIOUS)}
    if set(manifest.get("files", {})) != expected:
        return "the kept exports are not those of these notebooks", None
    for name, digest in sorted(manifest["files"].items()):
        if not (store / name).is_file() or _sha256(store / name) != digest:
            return f"the kept {name} is missing or altered", None
    result = Plan()
    for name in notebooks:
        carried = []
        try:
            previous = nbformat.read(str(store / f"{name}{runner_api.PREVIOUS}"), as_version=4)
            notebook = nbformat.read(str(prepared / f"{name}.ipynb"), as_version=4)
            result.checks += len(merge(notebook, previous, set(manifest["checked"][name]), delimiters,
                                       tests.get(name, ()), carried))
        except RecheckError as error:
            return f"{name}: {error}", None
        result.merged[name] = notebook
        for index in carried:
            key = f"{name}:{notebook.cells[index].get('metadata', {}).get('nbgrader', {}).get('grade_id')}"
            if key in manifest.get("diagnoses", {}):
                result.carried[key] = manifest["diagnoses"][key]
    return "", result


def write_executed(merged: dict, prepared: Path) -> None:
    """No check changed: the merged notebooks are the executed ones, no sandbox needed."""
    for name, notebook in merged.items():
        nbformat.write(notebook, str(prepared / f"{name}.executed.ipynb"))


def stage(store: Path, prepared: Path, notebooks: list) -> None:
    """The kept files beside the prepared notebooks, for the sandbox (verified just before: plan)."""
    for name in notebooks:
        for suffix in (runner_api.PACK, runner_api.PREVIOUS):
            shutil.copyfile(store / f"{name}{suffix}", prepared / f"{name}{suffix}")


def disk_bytes(store: Path) -> int:
    return sum(path.stat().st_size for path in store.rglob("*") if path.is_file())


def group_size(students: int, workers: int, most: int) -> int:
    """Students per recheck sandbox: enough to pay the sandbox's start and the checker's imports
    (TensorFlow, for a check that reads a model) once for many, few enough to keep every worker busy."""
    return max(1, min(most, -(-students // (2 * workers))))


def group(jobs: list, stage: Path, number: int) -> Job:
    """One sandbox for these students' rechecks (graders.grading.executor.SandboxExecutor.run_group)."""
    return Job("", stage / f".recheck-group-{number}", [f"{job.student}/{name}" for job in jobs for name in job.notebooks],
               recheck=True, members=list(jobs))


def each(job: Job, execution) -> list:
    """[(job, execution)] of a returned job: a recheck group's students one by one, or the job itself."""
    return [(member, execution.members[member.student]) for member in job.members] if job.members else [(job, execution)]
