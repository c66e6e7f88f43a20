"""``python -m graders exchange check``: is nbgrader's exchange directory set up safely?

nbgrader's default exchange (``<root>/<course_id>/outbound|inbound|feedback``) keeps students
apart by file modes alone: students must be able to write into ``inbound`` but not list it,
and to find their own feedback by its hashed name but not list ``feedback``. A wrong mode
either stops every student (nbgrader then says "permission denied" mid-command) or lets one
read the others' work without a word. This reads the modes, changes nothing, and says for each
wrong one which directory, which mode and the command that fixes it.
"""
import stat
import sys
from pathlib import Path

from nbgrader.exchange.default.exchange import Exchange as DefaultExchange

from graders.course.coursedir import Course

# what nbgrader's release_assignment, submit and release_feedback make (not group-shared):
# (directory under <root>/<course_id>, mode, why)
COURSE_FOLDERS = (
    ("outbound", 0o755, "students read released assignments here"),
    ("inbound", 0o2733, "students hand in here but must not list the others' submissions"),
    ("feedback", 0o711, "students fetch their feedback by its hashed name but must not list the others'"),
)


def problems(root: Path, course_id: str) -> list:
    """One line per wrong or missing directory of the exchange: which, the mode found, the fix."""
    if not root.is_dir():
        return [f"exchange directory {root} does not exist: as root, run: mkdir -p {root} && chmod 1777 {root}"]
    found = []
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & 0o777 != 0o777:  # nbgrader's own test (release_assignment's ensure_root)
        found.append(f"exchange directory {root} has mode {mode:04o}, the instructor cannot create the course's "
                     f"folders in it: as root, run: chmod 1777 {root}")
    for name, wanted, why in COURSE_FOLDERS:
        folder = root / course_id / name
        if not folder.is_dir():
            continue  # nbgrader makes it, with the right mode, at the first release (feedback: release_feedback)
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode & 0o777 != wanted & 0o777:
            found.append(f"{folder} has mode {mode:04o}, not {wanted:04o} ({why}): as its owner, run: "
                         f"chmod {wanted:04o} {folder}")
    return found


def run(args) -> int:
    course = Course(args.course)
    root = Path(args.root or DefaultExchange(config=course.config).root)  # nbgrader's own default, read through it
    course_id = course.directory.course_id
    if not course_id:
        print("error: no c.CourseDirectory.course_id in nbgrader_config.py: the exchange keeps each course "
              "under <root>/<course_id>", file=sys.stderr)
        return 1
    found = problems(root, course_id)
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    if not found:
        print(f"exchange {root / course_id}: modes as nbgrader makes them")
    return 1 if found else 0


def add_command(commands) -> None:
    parser = commands.add_parser(
        "exchange", help="check the modes of nbgrader's exchange directory (hand-out and hand-in on a shared server)",
        description="check: read the modes of the exchange root (c.Exchange.root) and of <root>/<course_id>/"
                    "outbound, inbound and feedback, and print one line per wrong one with the command that fixes "
                    "it. Changes nothing. Exit status 1 if any is wrong. Run in the course directory.")
    parser.add_argument("action", choices=["check"])
    parser.add_argument("--root", type=Path, help="the exchange directory (default: c.Exchange.root of nbgrader_config.py)")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.set_defaults(run=run)

