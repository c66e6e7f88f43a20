"""The class report's plots (graders.outputs.report counts, this draws): PNG bytes from bare
matplotlib Figures, saved with Agg, no display and no pyplot state.

matplotlib is imported inside, not at the top: every `python -m graders` command loads the
report's module, and the import costs half a second.
"""
import io
import math

from graders.inside import hidden


def _figure(**options):
    from matplotlib.figure import Figure
    return Figure(**options)


def _integers():
    from matplotlib.ticker import MaxNLocator
    return MaxNLocator(integer=True)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def score_histogram(parts, pending: int, graded: int, others: int) -> bytes:
    """`parts`: [(title, each graded student's points, the most there are)], side by side; `pending`
    answers still to grade by hand; `graded` students with grades, `others` without."""
    figure = _figure(figsize=(10, 3.6), layout="constrained")
    for axes, (title, values, top) in zip(figure.subplots(1, 2), parts):
        top = math.ceil(max([top, *values]))
        axes.hist(values, bins=[edge - 0.5 for edge in range(top + 2)], color="tab:blue", edgecolor="white")
        axes.set_xlim(-0.5, top + 0.5)
        axes.xaxis.set_major_locator(_integers())
        axes.yaxis.set_major_locator(_integers())
        axes.set_title(f"{title} (of {top:g})")
        axes.set_xlabel("points")
        axes.set_ylabel("students")
    if pending:
        figure.axes[1].set_xlabel(f"points ({pending} answers not yet graded by hand count 0)")
    figure.suptitle(f"{graded} students with grades" + (f"; {others} without (see grading status)" if others else ""))
    return _png(figure)


def pass_rate(rows) -> bytes:
    """`rows`: [(test cell, students with full points, students scored)], first on top."""
    figure = _figure(figsize=(8, 1.2 + 0.4 * len(rows)), layout="constrained")
    axes = figure.subplots()
    rates = [100 * full / scored if scored else 0.0 for _, full, scored in rows]
    axes.barh([key for key, _, _ in rows], rates, color="tab:green")
    for row, ((_, full, scored), rate) in enumerate(zip(rows, rates)):
        axes.text(rate + 1, row, f"{rate:.0f}% ({full}/{scored})", va="center")
    axes.set_xlim(0, 118)
    axes.set_xticks(range(0, 101, 20))
    axes.invert_yaxis()  # first question on top
    axes.set_xlabel("% of students with grades who got full points")
    axes.set_title("Pass rate per autograded test cell")
    return _png(figure)


def misconceptions(charts) -> bytes:
    """`charts`: [(question, graders.outputs.report.misconception_rows)], one bar chart each: the
    share of students scored on it who made each misconception ("other" last)."""
    heights = [len(rows) for _, rows in charts]
    figure = _figure(figsize=(9, 0.8 * len(charts) + 0.32 * sum(heights)), layout="constrained")
    grid = figure.subplots(len(charts), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for axes, (key, rows) in zip(grid[:, 0], charts):
        shares = [100 * share for _, _, share, _, _ in rows]
        axes.barh([name for name, *_ in rows], shares,
                  color=["tab:gray" if name == hidden.OTHER else "tab:orange" for name, *_ in rows])
        for row, (_, count, share, _, _) in enumerate(rows):
            axes.text(100 * share + 1, row, f"{100 * share:.0f}% ({count})", va="center")
        axes.set_xlim(0, 118)
        axes.set_xticks(range(0, 101, 20))
        axes.invert_yaxis()
        axes.set_title(key, loc="left", fontsize=10)
    grid[-1, 0].set_xlabel("% of the students scored on the question")
    figure.suptitle("What the class got wrong: misconceptions per question")
    return _png(figure)


def status_counts(counts, usable, not_submitted) -> bytes:
    """`counts`: [(status, [student names])]; green for the `usable` statuses, grey for `not_submitted`."""
    figure = _figure(figsize=(8, 1.2 + 0.4 * len(counts)), layout="constrained")
    axes = figure.subplots()
    colours = ["tab:green" if status in usable else "tab:gray" if status == not_submitted else "tab:red" for status, _ in counts]
    axes.barh([status for status, _ in counts], [len(names) for _, names in counts], color=colours)
    for row, (_, names) in enumerate(counts):
        axes.text(len(names), row, f" {len(names)}", va="center")
    axes.xaxis.set_major_locator(_integers())
    axes.set_xlim(0, max([len(names) for _, names in counts] or [1]) * 1.15 + 0.5)
    axes.invert_yaxis()
    axes.set_xlabel("students")
    axes.set_title("Grading status (green: graded; red: no usable grades)")
    return _png(figure)


def similarity_histogram(values) -> bytes:
    """All pairs' code similarity (graders.outputs.similarity), 0 to 1."""
    figure = _figure(figsize=(10, 3.2), layout="constrained")
    axes = figure.subplots()
    axes.hist(values, bins=[step / 20 for step in range(21)], color="tab:blue", edgecolor="white")
    axes.set_xlim(0, 1)
    axes.yaxis.set_major_locator(_integers())
    axes.set_xlabel("similarity (share of own answer code found in the other's)")
    axes.set_ylabel("pairs of students")
    return _png(figure)
