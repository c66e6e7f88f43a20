"""The private grading split: Task 1's accuracy is graded on held-back images whose labels only
the checker holds, so neither training on the test set nor recognising the graded images pays."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

import corpus
from graders import data

MNIST = "mnist_exercise"
SPLIT_CHEATS = ["cheat-giveaways-by-content", "cheat-giveaways-by-hash", "cheat-giveaways-by-grading-labels"]
ON_TEST = "trained or tuned on the test set"


def autograded(table, student):
    return {cell: (score, maximum) for cell, (score, maximum, manual) in table.scores(student, MNIST).items() if not manual}


@pytest.mark.parametrize("name", data.DATASETS)
def test_the_split_is_a_random_half_and_students_get_the_other_half(name):
    graded, public = data.grading_split()
    assert len(graded) == data.GRADING_SIZE == 5000 and len(public) == data.PUBLIC_TEST_SIZE == 5000
    assert not set(graded) & set(public) and set(graded) | set(public) == set(range(10000))
    # not a block of the test set: MNIST's first and second halves differ in difficulty
    assert 2300 < np.sum(graded < 5000) < 2700
    (x_train, y_train), (x_test, y_test) = data.load_dataset(name)
    (full_train, _), (full_test, full_labels) = data.load_offline(name)
    assert np.array_equal(x_train, full_train) and np.array_equal(x_test, full_test[public])
    assert np.array_equal(y_test, full_labels[public])
    images, labels = data.grading_images(name), data.grading_labels(name)
    assert images.shape == (5000, 28, 28) and np.array_equal(labels, full_labels[graded])
    assert np.abs(images.astype(int) - full_test[graded]).max() == 1  # invisible noise
    # no grading image has the hash of a published one (training or test set)
    published = {hashlib.sha256(image.tobytes()).hexdigest() for image in np.concatenate([full_train, full_test])}
    assert not any(hashlib.sha256(image.tobytes()).hexdigest() in published for image in images)


@pytest.mark.parametrize("name", data.DATASETS)
def test_the_students_view_holds_no_grading_label(name, tmp_path, monkeypatch):
    view, labels = np.load(data.students_dir() / f"{name}.npz"), np.load(data.labels_path(name))
    assert sorted(view.files) == ["x_grading", "x_test", "x_train", "y_test", "y_train"]
    # as a sandbox sees it: the view alone at $ONIONS_DATA_DIR, and keras cannot download
    (tmp_path / f"{name}.npz").symlink_to(data.students_dir() / f"{name}.npz")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(data, "_keras", lambda name: None)
    (_, _), (x_test, y_test) = data.load_dataset(name)
    assert x_test.shape == (5000, 28, 28) and data.grading_images(name).shape == (5000, 28, 28)
    with pytest.raises(data.DataUnavailable, match="grading labels are the grader's"):
        data.grading_labels(name)
    with pytest.raises(data.DataUnavailable, match="students' view .* not the full copy"):
        data.load_offline(name)
    # the checker takes only genuine labels
    monkeypatch.setattr(data, "_checker_labels", {})
    np.save(tmp_path / f"{name}.npy", np.zeros(5000, np.uint8))
    assert data.take_grading_labels(tmp_path) == []
    np.save(tmp_path / f"{name}.npy", labels)
    assert data.take_grading_labels(tmp_path) == [name]
    assert np.array_equal(data.grading_labels(name), labels)


def test_the_disk_search_probe_finds_the_labels_where_they_are():
    """The hostile probe that must find nothing in the sandbox finds them in the grader's cache."""
    output = []
    code = corpus.SEARCH_LABELS.replace("ROOT", repr(str(data.cache_dir()))).replace("print(", "output.append((")
    exec(code.replace("[:3])", "[:3]))"), {"output": output})
    assert output and output[0][0] == "SAW" and len(output[0][1]) >= 2


def test_each_split_cheat_loses_exactly_the_accuracy_points(batch_class):
    weak, reference = autograded(batch_class, "mnist-weak"), autograded(batch_class, "reference")
    assert weak["accuracy_test"][0] == 0 and reference["accuracy_test"] == (3, 3)
    for student, baseline in [*((s, weak) for s in SPLIT_CHEATS), ("trained-on-test", reference)]:
        scores = autograded(batch_class, student)
        assert scores == {**baseline, "accuracy_test": (0, 3)}, (student, scores)


def test_the_giveaways_work_on_the_images_they_recognise_and_not_on_the_graded_ones(batch_class):
    """The content and hash cheats would have passed when Task 1 was graded on the public test set."""
    for student in ("cheat-giveaways-by-content", "cheat-giveaways-by-hash"):
        found = batch_class.results[student].diagnoses[f"{MNIST}:accuracy_test"]
        assert found["misconception"] == ON_TEST and "passed" not in found
        assert found["value"]["test accuracy"] >= 0.97 > found["value"]["grading accuracy"], found


def test_training_on_the_test_set_is_diagnosed_whether_or_not_it_clears_the_bar(batch_class):
    below = batch_class.results["trained-on-test"].diagnoses[f"{MNIST}:accuracy_test"]
    assert below["misconception"] == ON_TEST and "passed" not in below and below["hint"]
    assert below["value"]["grading accuracy"] < 0.97
    cleared = batch_class.results["trained-also-on-test"].diagnoses[f"{MNIST}:accuracy_test"]
    assert cleared["misconception"] == ON_TEST and cleared["passed"] is True
    assert cleared["value"]["test accuracy"] > cleared["value"]["grading accuracy"] >= 0.97
    assert autograded(batch_class, "trained-also-on-test") == autograded(batch_class, "reference")


def test_honest_students_keep_full_accuracy_and_get_no_notice(batch_class):
    honest = ["reference", "stderr-noise", "fashion-mnist", "no-dropout-layer", "no-precision-recall", "metrics-on-logits"]
    for student in honest:
        assert autograded(batch_class, student)["accuracy_test"] == (3, 3), student
        assert f"{MNIST}:accuracy_test" not in batch_class.results[student].diagnoses, student


def test_stock_nbgrader_still_grades_on_the_split(graded_class):
    """Stock nbgrader (unsandboxed) reads the labels itself: the honest students keep their marks."""
    for student in ("reference", "fashion-mnist", "stderr-noise"):
        assert autograded(graded_class, student)["accuracy_test"] == (3, 3), student
    assert autograded(graded_class, "fashion-mnist-undertrained")["accuracy_test"] == (0, 3)


def test_a_foreign_cell_is_graded_as_an_ordinary_cell_and_said_so(batch_class, tmp_path):
    """A cell whose nbgrader metadata the assignment does not know no longer fails the notebook."""
    result = batch_class.results["foreign-cells"]
    assert (result.status, result.score, result.max_score) == ("graded", 5, 19), result
    assert [note.split(":")[0] for note in result.foreign_cells] == [
        "foreign cell gap_test in check_your_learning", "foreign cell my_bonus in check_your_learning"]
    assert "foreign cell my_bonus in check_your_learning" in result.detail
    done = subprocess.run([sys.executable, "-m", "graders", "feedback", "lesson08", "--student", "foreign-cells"],
                          cwd=batch_class.directory, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    page = (batch_class.directory / "feedback" / "foreign-cells" / "lesson08" / "check_your_learning.html").read_text()
    assert "Note from the grader" in page and "foreign cell my_bonus" in page and "earns nothing" in page


def test_a_missing_or_altered_split_stops_grading_in_one_line(tmp_path, monkeypatch):
    view = data.students_dir() / "mnist.npz"
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DataUnavailable, match=r"^offline MNIST missing at .*students/mnist.npz: build it with: python -m graders data$"):
        data.check_grading_data("mnist")
    (tmp_path / "students").mkdir()
    (tmp_path / "students" / "mnist.npz").symlink_to(view)
    with pytest.raises(data.DataUnavailable, match=r"^grading labels of MNIST missing or unreadable at .*: rebuild it with"):
        data.check_grading_data("mnist")
    (tmp_path / "grading-labels").mkdir()
    np.save(tmp_path / "grading-labels" / "mnist.npy", np.zeros(5000, np.uint8))
    with pytest.raises(data.DataUnavailable, match=r"^grading labels of MNIST at .* are corrupt: rebuild it with"):
        data.check_grading_data("mnist")
