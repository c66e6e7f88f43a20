"""Hand in a class from an LMS download: `python -m graders intake ARCHIVE ASSIGNMENT`.

The archive is checked member by member before anything is written, then nbgrader's own
`nbgrader zip_collect` (its ExtractorPlugin and FileNameCollectorPlugin) extracts and collects
it into a staging folder under .graders/, and only then is each student's folder moved into
submitted/. Any problem stops the whole import with one line and leaves submitted/ as it was.
"""
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from traitlets import Integer
from traitlets.config import Configurable

from graders.course.coursedir import Course, run_nbgrader
from graders.errors import GradersError

logger = logging.getLogger(__name__)

# Canvas' "Download Submissions" names every file <lastfirst>_[LATE_]<user id>_<file id>_<uploaded
# name>, and appends -1, -2 ... to the uploaded name of a re-upload. The user id is the nbgrader
# student id. One pattern, shared by our checks and by nbgrader's collector, so both agree.
SCHEME = (r"[^_/]+_(?:(?:LATE|late)_)?(?P<student_id>[A-Za-z0-9][A-Za-z0-9.@-]*)_[0-9]+_"
          r"(?P<file_id>[^/]+?)(?:-[0-9]+| \([0-9]+\))?\.ipynb")
SCHEME_TEXT = "<lastfirst>_[LATE_]<student id>_<submission id>_<notebook>[-N].ipynb"
LATE = re.compile(r"[^_/]+_(?:LATE|late)_")  # Canvas' late marker; it holds no time

# Moodle's "Download all submissions" (mod/assign/classes/downloader.php): a folder per participant,
# "<full name>_<participant id>_assignsubmission_file" (Moodle >= 4.1; "..._file_" before), holding
# the files as uploaded; without "download as folders", one flat file "<...>_assignsubmission_file_<name>".
# The full name has no "_" (the downloader replaces it); the participant id is the student id.
MOODLE_SCHEME = (r"[^_/]+_(?P<student_id>[0-9]+)_assignsubmission_file(?:_?/|_)"
                 r"(?P<file_id>[^/]+?)(?: \([0-9]+\))?\.ipynb")
MOODLE_SCHEME_TEXT = "<full name>_<participant id>_assignsubmission_file[_]/<notebook>.ipynb"
MOODLE_MARK = re.compile(r"(?:^|/)[^_/]+_[0-9]+_assignsubmission_")

# an LMS download of notebooks is small; anything bigger is a mistake or a zip bomb
MAX_MEMBERS, MAX_NOTEBOOK_BYTES, MAX_TOTAL_BYTES = 10_000, 100 << 20, 2 << 30  # GradersIntake's defaults
ARCHIVE_NAME = "lms-download.zip"  # the checked copy that zip_collect extracts


class IntakeError(GradersError):
    """A problem with the archive or the course: nothing was imported."""


class GradersIntake(Configurable):
    """What `python -m graders intake` accepts of an LMS download (nbgrader_config.py, c.GradersIntake.*):
    beyond these, the archive is refused before anything is unpacked."""
    max_members = Integer(MAX_MEMBERS, help="files and folders an archive may hold").tag(config=True)
    max_notebook_bytes = Integer(MAX_NOTEBOOK_BYTES, help="bytes one handed-in notebook may unpack to").tag(config=True)
    max_total_bytes = Integer(MAX_TOTAL_BYTES, help="bytes all of an archive's notebooks may unpack to").tag(config=True)


def notebook_names(directory: Path, assignment: str) -> list:
    names = sorted(p.name for p in (Path(directory) / "source" / assignment).glob("*.ipynb"))
    if not names:
        raise IntakeError(f"{directory}/source/{assignment} has no notebooks: check the assignment name "
                          f"(or pass --course)")
    return names


def _unsafe_path(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return name.startswith("/") or "\\" in name or re.match(r"[A-Za-z]:", name) is not None or ".." in parts


def layout(members: list) -> tuple:
    """(scheme, its text, LMS) of an archive: Moodle's if any member is in a Moodle submission folder."""
    if any(MOODLE_MARK.search(info.filename) for info in members):
        return MOODLE_SCHEME, MOODLE_SCHEME_TEXT, "Moodle"
    return SCHEME, SCHEME_TEXT, "Canvas"


def _handed_in(info: zipfile.ZipInfo, names: list, where: str, scheme=(SCHEME, SCHEME_TEXT, "Canvas")) -> tuple:
    """(student, notebook) that a member hands in; IntakeError if it is unsafe or not named by the scheme."""
    member, fix = repr(info.filename), "remove it from the archive"
    if _unsafe_path(info.filename):
        raise IntakeError(f"{where}: member {member} has an unsafe path (absolute, '..' or '\\'): {fix}")
    mode = info.external_attr >> 16
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise IntakeError(f"{where}: member {member} is {what}: {fix}")
    if mode and not mode & stat.S_IRUSR:
        raise IntakeError(f"{where}: member {member} is stored unreadable (mode {oct(mode & 0o777)}): {fix}")
    if info.flag_bits & 0x1:
        raise IntakeError(f"{where}: member {member} is encrypted: download the submissions without a password")
    pattern, text, lms = scheme
    parts = PurePosixPath(info.filename).parts
    match = re.fullmatch(pattern, "/".join(parts[-2:]) if lms == "Moodle" else parts[-1])
    if not match:
        raise IntakeError(f"{where}: member {member} is not named {text}: rename it so or {fix}")
    notebook = match["file_id"] + ".ipynb"
    if notebook not in names:
        raise IntakeError(f"{where}: member {member} is {notebook!r}, not a notebook of the assignment "
                          f"({', '.join(names)}): rename it or {fix}")
    return match["student_id"], notebook


def check_archive(archive: Path, names: list, label: str = None, limits: GradersIntake = None) -> dict:
    """{student: {notebook: sha256}} of a well-formed archive; IntakeError naming the first bad member."""
    where, limits = label or Path(archive).name, limits or GradersIntake()
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            if len(members) > limits.max_members:
                raise IntakeError(f"{where} has {len(members)} members (limit {limits.max_members}): split the download")
            found, origin, total = {}, {}, 0
            scheme = layout(members)
            for info in members:
                if info.is_dir():
                    if _unsafe_path(info.filename):
                        raise IntakeError(f"{where}: folder {info.filename!r} has an unsafe path: remove it from the archive")
                    continue
                student, notebook = _handed_in(info, names, where, scheme)
                if (student, notebook) in origin:
                    raise IntakeError(f"{where}: members {origin[student, notebook]!r} and {info.filename!r} are both "
                                      f"{student}'s {notebook}: keep one of them")
                if info.file_size > limits.max_notebook_bytes:
                    raise IntakeError(f"{where}: member {info.filename!r} is {info.file_size} bytes (limit "
                                      f"{limits.max_notebook_bytes}): remove it from the archive")
                digest, size = _read(zipped, info, where, limits.max_notebook_bytes)
                total += size
                if total > limits.max_total_bytes:
                    raise IntakeError(f"{where} holds more than {limits.max_total_bytes} bytes: split the download")
                found.setdefault(student, {})[notebook], origin[student, notebook] = digest, info.filename
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError) as error:
        raise IntakeError(f"{where} is not a readable zip archive ({error}): download it again") from None
    if not found:
        raise IntakeError(f"{where} holds no notebooks: download the submissions of the assignment again")
    return found


def _read(zipped, info, where, max_bytes: int):
    """sha256 and size of a member, read in full: zipfile checks its CRC; a lying size header is caught."""
    digest, size = hashlib.sha256(), 0
    try:
        with zipped.open(info) as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise IntakeError(f"{where}: member {info.filename!r} unpacks to more than {max_bytes} bytes: "
                                      f"remove it from the archive")
                digest.update(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as error:
        raise IntakeError(f"{where}: member {info.filename!r} is corrupt ({error}): download the submissions again") from None
    return digest.hexdigest(), size


def _zip_collect(directory: Path, staging: Path, assignment: str, scheme: str = SCHEME):
    """nbgrader zip_collect, reading the archive and writing submitted/ inside `staging` only."""
    relative = staging.relative_to(directory)  # zip_collect joins its folders to the course root
    try:
        run_nbgrader(directory, "zip_collect", assignment,
                        f"--CourseDirectory.root={directory}",
                        f"--ZipCollectApp.downloaded_directory={relative / 'downloaded'}",
                        f"--CourseDirectory.submitted_directory={relative / 'submitted'}",
                        f"--FileNameCollectorPlugin.named_regexp=.*/{scheme}$",
                        log=staging / "zip_collect.log")
    except RuntimeError:
        lines = (staging / "zip_collect.log").read_text(errors="replace").split("\n")
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        raise IntakeError(f"nbgrader zip_collect failed ({last}): nothing imported") from None


def _staged(staging: Path, assignment: str, expected: dict) -> dict:
    """{student: staged folder}, after checking zip_collect collected exactly the checked notebooks."""
    folders = {}
    for student, notebooks in expected.items():
        folder = staging / "submitted" / student / assignment
        got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*") if p.is_file()}
        if got != notebooks:
            raise IntakeError(f"nbgrader zip_collect collected {sorted(got)} for {student}, not {sorted(notebooks)}: "
                              f"nothing imported")
        for path in folder.iterdir():
            path.chmod(0o644)  # zip_collect copies the modes stored in the archive
        folders[student] = folder
    return folders


def _move_in(course_dir: Course, staging: Path, assignment: str, folders: dict) -> set:
    """Move every staged folder into submitted/, all or none; return the students replaced."""
    done, replaced = [], set()
    try:
        for student, folder in sorted(folders.items()):
            target = course_dir.folder("submitted", assignment, student)
            if target.exists():
                old = staging / "replaced" / student
                old.parent.mkdir(parents=True, exist_ok=True)
                os.rename(target, old)
                done.append((target, old))
                replaced.add(student)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(folder, target)
            done.append((folder, target))
    except OSError as error:
        for source, destination in reversed(done):
            os.rename(destination, source)
        raise IntakeError(f"could not move the hand-ins into submitted/ ({error}): nothing imported") from None
    return replaced


def intake(directory: Path, archive: Path, assignment: str, force: bool = False) -> dict:
    """Hand in every student of an LMS archive under submitted/; {student: [notebooks]}.

    Without `force`, a student who already has submitted/<student>/<assignment> stops the import.
    """
    course_dir = Course(directory)  # CourseError if it is not a course directory
    directory = course_dir.root
    names = notebook_names(directory, assignment)
    archive = Path(archive)
    if not archive.is_file():
        raise IntakeError(f"{archive} is not a file: give the path of the zip downloaded from the LMS")
    work = course_dir.work(assignment)
    work.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="intake-", dir=work))
    try:
        # checked and extracted from one private copy, so the archive cannot change in between
        checked = staging / "downloaded" / assignment / "archive" / ARCHIVE_NAME
        checked.parent.mkdir(parents=True)
        shutil.copyfile(archive, checked)
        expected = check_archive(checked, names, label=archive.name, limits=GradersIntake(config=course_dir.config))
        with zipfile.ZipFile(checked) as zipped:
            members = zipped.infolist()
        scheme, _, lms = layout(members)
        late = {re.fullmatch(SCHEME, PurePosixPath(info.filename).name)["student_id"] for info in members
                if lms == "Canvas" and not info.is_dir() and LATE.match(PurePosixPath(info.filename).name)}
        present = sorted(s for s in expected if course_dir.folder("submitted", assignment, s).exists())
        if present and not force:
            raise IntakeError(f"{len(present)} student(s) of {archive.name} already handed in {assignment} "
                              f"({', '.join(present[:5])}{' ...' if len(present) > 5 else ''}): nothing imported; "
                              f"pass --force to replace their hand-ins")
        _zip_collect(directory, staging, assignment, scheme)
        replaced = _move_in(course_dir, staging, assignment, _staged(staging, assignment, expected))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for student, notebooks in sorted(expected.items()):
        missing = [n for n in names if n not in notebooks]
        logger.info(f"{student}: {', '.join(sorted(notebooks))} -> submitted/{student}/{assignment}/"
                    + (" (replaced the earlier hand-in)" if student in replaced else "")
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + ("; LATE_ in Canvas (no time: Canvas' late policy applies when the grade is imported)"
                       if student in late else ""))
    logger.info(f"imported {len(expected)} student(s) from {archive.name}"
                + (" (Moodle's Download all submissions)" if lms == "Moodle" else "") + " with nbgrader zip_collect")
    return {student: sorted(notebooks) for student, notebooks in expected.items()}


def lms_archive(path: Path, students: dict) -> Path:
    """Write a Canvas-style download of `students` ({student: {notebook file name: bytes}}) to `path`."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zipped:
        for number, (student, files) in enumerate(sorted(students.items()), start=1):
            lastfirst = re.sub(r"[^a-z0-9]", "", student.lower()) or "student"
            for index, (name, content) in enumerate(sorted(files.items())):
                zipped.writestr(f"{lastfirst}_{student}_{1000 * number + index}_{name}", content)
    return Path(path)


def run(args) -> int:
    intake(args.course, args.archive, args.assignment, force=args.force)
    return 0


def add_command(commands):
    parser = commands.add_parser(
        "intake", help="hand in a class from an LMS download (zip) with nbgrader zip_collect",
        description=f"Hand in every student of ARCHIVE, a Canvas 'Download Submissions' zip or a Moodle "
                    f"'Download all submissions' zip (told apart by its names), under "
                    f"submitted/<student id>/ASSIGNMENT/ with nbgrader zip_collect. Members must be named "
                    f"{SCHEME_TEXT} (Canvas' own names; the user id is the student id, '-N' marks a re-upload) "
                    f"or, from Moodle, {MOODLE_SCHEME_TEXT} (the participant id is the student id) "
                    f"with a notebook name of source/ASSIGNMENT. The archive is checked first (readable, no "
                    f"absolute or '..' paths, no links, every member named so, no duplicates, at most "
                    f"{MAX_NOTEBOOK_BYTES >> 20} MB a notebook): any problem stops with one line and nothing "
                    f"in submitted/ changes. Lateness is not carried over: Canvas' LATE_ holds no time (its students are "
                    f"listed; Canvas' late policy applies on import), Moodle's zip no submission time.")
    parser.add_argument("archive", type=Path, help="the zip downloaded from the LMS")
    parser.add_argument("assignment", help="the assignment, as in source/ (e.g. lesson08)")
    parser.add_argument("--force", action="store_true",
                        help="replace (delete) the hand-ins of students already in submitted/")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.set_defaults(run=run)
