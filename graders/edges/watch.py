"""``python -m graders watch ASSIGNMENT``: feedback minutes after submitting.

An instructor runs it beside the course. It looks at nbgrader's exchange (the inbound folder, read
through nbgrader's own ExchangeCollect, which picks each student's latest hand-in); for each new
hand-in it runs nbgrader's collect, grades that student with the batch grader (the same sandbox,
limits, private split and journal as ``autograde``), writes the feedback (hidden tests cut, as
``graders feedback``), marks it preliminary and releases it with nbgrader's release_feedback: the
student sees it with *Fetch Feedback*. Several arriving together are graded together, in parallel.

At most ``c.GradersWatch.per_period`` hand-ins of a student are graded per ``period``; one over is
collected (the final batch grades it) and its feedback page says it was not graded now and when
the next one will be. After the assignment's due date (nbgrader's) it stops and says so: the final
grade is the batch's. What it has done is a journal (``.graders/ASSIGNMENT/watch.jsonl``, one line
per hand-in, written after its feedback is released), so a watcher killed and started again
resumes: a hand-in handled is never graded again, one made while it was down is graded then.
"""
import datetime
import html
import logging
import shutil
import time
from pathlib import Path

from nbgrader.auth import Authenticator
from nbgrader.exchange.abc.exchange import ExchangeError
from nbgrader.exchange import ExchangeFactory
from traitlets import Float, Integer
from traitlets.config import Configurable

from graders.course.coursedir import BatchState, Course, run_nbgrader
from graders.course.grading_lock import grading_lock
from graders.course.plain import plain
from graders.errors import GradersError
from graders.grading import batch, settings
from graders.outputs import feedback

logger = logging.getLogger(__name__)

JOURNAL = "watch.jsonl"  # beside the batch's state.jsonl, keyed by the exchange's hand-in folder name

PRELIMINARY = ('<div class="onions-preliminary" style="border:2px solid #b58900;padding:0.6em;margin:0.6em 0">'
               '<strong>Preliminary feedback</strong>, graded when you submitted. Your grade is the one given '
               'after the due date, when every latest hand-in is graded again.</div>')
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{notebook}: {title}</title></head>
<body><h1>{notebook}: {title}</h1>
{body}
</body></html>
"""
NOT_NOW = """<p>Your hand-in of {submitted} was received and kept: it will be graded after the due date, with
everyone's latest hand-in.</p>
<p>It was not graded now because {used} of your hand-ins made in the {span} before it were graded on
submission, the most this course allows. The next hand-in graded on submission can be one made
after {next_time} (UTC).</p>"""
NOT_GRADED = """<p>Your hand-in could not be graded: <strong>{status}</strong>. Your instructor sees why. It is
kept: after the due date your latest hand-in is graded with everyone's.</p>"""
NO_FEEDBACK = """<p>Your hand-in was graded, but its feedback could not be written. Your instructor sees why;
you get your feedback after the due date.</p>"""


class GradersWatch(Configurable):
    """What a course chooses for `python -m graders watch` (in nbgrader_config.py, as c.GradersWatch.*)."""
    per_period = Integer(3, help="hand-ins of one student graded on submission per period; more are kept and "
                                 "graded by the final batch; 0 turns on-submit grading off").tag(config=True)
    period = Float(86400.0, help="the window, in seconds, that per_period counts over").tag(config=True)
    interval = Float(10.0, help="seconds between two looks at the exchange for new hand-ins").tag(config=True)


class Watcher:
    def __init__(self, course_root: Path, assignment: str, use_sandbox: bool = True):
        self.course, self.assignment, self.use_sandbox = Course(course_root), assignment, use_sandbox
        self.chosen = GradersWatch(config=self.course.config)
        if self.chosen.per_period <= 0:
            raise GradersError(f"c.GradersWatch.per_period is {self.chosen.per_period}: on-submit grading is off for "
                               "this course (set it in nbgrader_config.py to turn it on)")
        self.course.check_assignment(assignment)
        self.journal = BatchState(self.course.work(assignment), JOURNAL)
        self.handled = self.journal.load()  # {inbound folder name: what was done}

    def waiting(self) -> tuple:
        """([nbgrader's record of each student's latest hand-in not handled yet], the due date or None)."""
        coursedir = self.course.directory
        coursedir.assignment_id = self.assignment
        collect = ExchangeFactory(config=self.course.config).collect  # the course's: graders.edges.collect's
        collector = collect(coursedir=coursedir, authenticator=Authenticator(config=self.course.config),
                            config=self.course.config)
        try:
            collector.init_src()
        except ExchangeError as error:  # nbgrader's fail(): no course folder in the exchange yet, no rights
            raise GradersError(f"cannot read the exchange's hand-ins ({error}): check c.Exchange.root in "
                               f"nbgrader_config.py, and release the assignment first (nbgrader release_assignment "
                               f"{self.assignment})") from None
        new = [record for record in collector.src_records if record["filename"] not in self.handled]
        return sorted(new, key=lambda record: record["timestamp"]), collector.duedate

    def once(self) -> bool:
        """Handle what is waiting; False once the due date has passed (the watcher's work is over)."""
        new, due = self.waiting()
        if due is not None and datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) > due:  # nbgrader's: naive UTC
            logger.info(f"{self.assignment} was due {due:%Y-%m-%d %H:%M} UTC: on-submit grading has stopped; "
                        f"grade everyone with python -m graders autograde {self.assignment}")
            return False
        if new:
            with grading_lock(self.course.work(self.assignment), f"the watcher (python -m graders watch {self.assignment})"):
                self.handled = self.journal.load()  # what another watcher handled while this one waited
                self.handle(self.waiting()[0])
        return True

    def handle(self, new: list) -> None:
        """Collect, grade and release the hand-ins in `new` (nbgrader's records), holding the assignment's lock."""
        if not new:
            return
        logger.info(f"{len(new)} new hand-in{'' if len(new) == 1 else 's'} of {self.assignment}: collecting")
        run_nbgrader(self.course.root, "collect", "--update", self.assignment)
        now, grader = time.time(), self.batch_grader()
        # graded already and unchanged (by the batch, or by a watcher killed before its journal line):
        # their feedback is released again, and they do not count against the student's limit
        unchanged, changed = batch.sort_out(grader, [record["username"] for record in new],
                                            self.course.state(self.assignment).load())
        grade_now = [record for record in new if record["username"] in unchanged
                     or self.used(record["username"], handed_in(record))[0] < self.chosen.per_period]
        later = [record for record in new if record not in grade_now]
        results = self.grade(grader, [record["username"] for record in grade_now]) if grade_now else {}
        for record in grade_now:
            self.finish(record, results.get(record["username"]), now, counted=record["username"] in changed)
        for record in later:
            self.defer(record, now)

    def used(self, student: str, at: float) -> tuple:
        """(hand-ins of `student` graded on submission that were made within the period before `at`, when
        the oldest of them leaves it): counted by when each was handed in, as the student's page says."""
        times = sorted(entry["handed_in"] for entry in self.handled.values()
                       if entry.get("student") == student and entry.get("counted") and entry["handed_in"] > at - self.chosen.period)
        return len(times), (times[0] + self.chosen.period if times else at)

    def batch_grader(self) -> batch.Batch:
        """The batch grader with the course's limits, as `python -m graders autograde` makes it."""
        chosen = settings.GradersBatch(config=self.course.config)
        return batch.Batch(self.course.root, self.assignment, chosen.limits(), chosen.worker_count(),
                           use_sandbox=self.use_sandbox)

    def grade(self, grader: batch.Batch, students: list) -> dict:
        """{student: Result}, the students side by side; their feedback written and marked preliminary."""
        results = {result.student: result for result in grader.run(students)}
        written = feedback.Feedback(self.course.root, self.assignment).run(students)
        for student, (kind, folder) in written.items():
            if kind == feedback.WRITTEN:
                for page in folder.glob("*.html"):
                    mark_preliminary(page)
            elif kind == feedback.NOT_GRADED:  # a broken or hostile hand-in: its student hears so, the others go on
                status = results[student].status if student in results else "not graded"
                self.pages(student, "not graded", NOT_GRADED.format(status=html.escape(str(status))))
            else:  # graded, but the feedback failed (logged by graders.outputs.feedback)
                self.pages(student, "no feedback yet", NO_FEEDBACK)
        return results

    def finish(self, record: dict, result, now: float, counted: bool) -> None:
        student = record["username"]
        self.release(student)
        entry = {"student": student, "handed_in": handed_in(record), "graded_at": now, "counted": counted,
                 "status": result.status if result else "not graded",
                 "score": result.score if result else 0, "max_score": result.max_score if result else 0}
        self.record(record, entry)
        seconds = f" ({result.seconds:.0f} s)" if result else ""
        logger.info(f"{plain(student, 0)}: {entry['score']:g} of {entry['max_score']:g}, {entry['status']}{seconds}; "
                    "feedback released")

    def defer(self, record: dict, now: float) -> None:
        """Keep the hand-in for the final batch; its feedback says why it was not graded now."""
        student = record["username"]
        used, next_at = self.used(student, handed_in(record))
        next_time = datetime.datetime.fromtimestamp(next_at, datetime.timezone.utc)
        self.pages(student, "not graded now", NOT_NOW.format(
            submitted=html.escape(f"{record['timestamp']:%Y-%m-%d %H:%M:%S}"), used=used, span=span(self.chosen.period),
            next_time=f"{next_time:%Y-%m-%d %H:%M:%S}"))
        self.release(student)
        self.record(record, {"student": student, "handed_in": handed_in(record), "deferred_at": now,
                             "status": "not graded now"})
        logger.info(f"{plain(student, 0)}: not graded now ({used} graded in the {span(self.chosen.period)} before; "
                    f"next after {next_time:%Y-%m-%d %H:%M:%S} UTC); kept for the final batch")

    def pages(self, student: str, title: str, body: str) -> None:
        """One page per handed-in notebook in feedback/STUDENT/ASSIGNMENT/, in place of any earlier
        grading's (which would not match this hand-in), ready for release_feedback."""
        coursedir = self.course.directory
        submitted = Path(coursedir.format_path(coursedir.submitted_directory, student, self.assignment))
        folder = Path(coursedir.format_path(coursedir.feedback_directory, student, self.assignment))
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in ("timestamp.txt", "submission_secret.txt"):  # what release_feedback hashes the pages with
            if (submitted / name).is_file():
                shutil.copy2(submitted / name, folder / name)
        for notebook in sorted(submitted.glob("*.ipynb")):
            (folder / f"{notebook.stem}.html").write_text(PAGE.format(notebook=html.escape(notebook.stem), title=title,
                                                                      body=body))

    def release(self, student: str) -> None:
        run_nbgrader(self.course.root, "release_feedback", self.assignment, "--student", student)

    def record(self, record: dict, entry: dict) -> None:
        self.journal.record(record["filename"], entry)
        self.handled[record["filename"]] = entry

    def run(self, once: bool = False) -> None:
        """Look every `interval` seconds until the due date (with `once`: handle what waits, and return)."""
        logger.info(f"watching the exchange for hand-ins of {self.assignment}: at most {self.chosen.per_period} "
                    f"graded per student per {span(self.chosen.period)}")
        while self.once() and not once:
            time.sleep(self.chosen.interval)


def span(seconds: float) -> str:
    for unit, size in (("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} seconds"


def handed_in(record: dict) -> float:
    """When the hand-in was made (nbgrader's timestamp, UTC), as seconds since the epoch."""
    return record["timestamp"].replace(tzinfo=datetime.timezone.utc).timestamp()


def mark_preliminary(page: Path) -> None:
    text = page.read_text()
    if PRELIMINARY not in text:
        start = text.find(">", text.find("<body")) + 1 if "<body" in text else 0
        page.write_text(text[:start] + PRELIMINARY + text[start:])


def run(args) -> int:
    try:
        Watcher(args.course, args.assignment, use_sandbox=not args.no_sandbox).run(once=args.once)
    except KeyboardInterrupt:
        print("stopped: every hand-in handled is in the journal; start it again to go on", flush=True)
        return 130
    return 0


def add_command(commands) -> None:
    parser = commands.add_parser(
        "watch", help="grade each hand-in as it arrives and release its preliminary feedback",
        description="Watch nbgrader's exchange for new hand-ins of ASSIGNMENT; collect each with nbgrader collect, "
                    "grade that student in the sandbox as autograde does, write the feedback (no hidden test, marked "
                    "preliminary) and release it with nbgrader release_feedback: the student fetches it in the "
                    "Assignments tab. At most c.GradersWatch.per_period graded hand-ins per student per period; more "
                    "are kept for the final batch. Stops at the due date. Safe to kill and start again; while a batch "
                    "grades the assignment, it waits. Run in the course directory.")
    parser.add_argument("assignment")
    parser.add_argument("--once", action="store_true", help="handle the hand-ins waiting now, then exit (for cron, tests)")
    parser.add_argument("--no-sandbox", action="store_true", help="run student code unsandboxed (trusted code only)")
    parser.add_argument("--course", type=Path, default=Path("."), help="the course directory (default: here)")
    parser.set_defaults(run=run)
