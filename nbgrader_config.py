"""nbgrader configuration for the course (the repository root is the course directory)."""
from graders.grading.execute import autograde_preprocessors, sanitize_preprocessors

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "onions"

# Training the reference solution takes ~15 s per cell on 2 cores; nbgrader's default of
# 30 s would zero a correct but slower solution (and remove its autograded folder).
c.Execute.timeout = 300

# Grade on errors only: TensorFlow's stderr warnings must not zero a correct test cell
# (stock nbgrader's Execute, and the batch grader's StagedExecute).
c.Autograde.autograde_preprocessors = autograde_preprocessors()
c.StagedExecute.stderr_as_stdout = True
# A cell with nbgrader metadata the assignment does not know (copied from another assignment)
# would make nbgrader fail the whole notebook: it is graded as an ordinary cell instead.
c.Autograde.sanitize_preprocessors = sanitize_preprocessors()

# The batch grader (python -m graders autograde): each student's kernels are forked from one
# process that imported these once; the offline MNIST must be there before grading starts.
c.GradersBatch.preload = ["numpy", "tensorflow", "keras"]
c.GradersBatch.datasets = ["mnist"]

# nbgrader's exchange on a shared server (README "On a shared server"): the administrator makes
# this directory once (mkdir -p /srv/nbgrader/exchange && chmod 1777 /srv/nbgrader/exchange);
# students' nbgrader needs the same root and course_id (/etc/jupyter/nbgrader_config.py).
c.Exchange.root = "/srv/nbgrader/exchange"
# nbgrader collects a hand-in folder another student made in a student's name (it only warns);
# this collect never takes one (graders/edges/collect.py): nbgrader collect, Formgrader, the watcher
c.ExchangeFactory.collect = "graders.edges.collect.OwnerCheckedCollect"

# Validate (the button and `nbgrader validate`): stderr noise does not fail a test cell, as in
# grading and `python -m graders selfcheck` (onions_student/validate.py; the hub's students get the same).
from onions_student.validate import configure_validator  # noqa: E402
configure_validator(c)
