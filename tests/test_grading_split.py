"""The private grading split: Task 1's accuracy is graded on held-back images whose labels only
the checker holds, so neither training on the test set nor recognising the graded images pays."""
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import corpus
from graders import data
from graders.course import gradingsplit
from graders.grading import recheck

MNIST = "mnist_exercise"
SPLIT_CHEATS = ["cheat-giveaways-by-content", "cheat-giveaways-by-hash", "cheat-giveaways-by-grading-labels",
                "cheat-giveaways-by-public-order"]
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
    view = np.load(data.students_dir() / f"{name}.npz")
    assert sorted(view.files) == ["x_test", "x_train", "y_test", "y_train"] and len(view["x_test"]) == 5000
    grading = gradingsplit.build(bytes(range(32)))
    # as a sandbox sees it: the view alone at $ONIONS_DATA_DIR, and keras cannot download
    (tmp_path / f"{name}.npz").symlink_to(data.students_dir() / f"{name}.npz")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(data, "_keras", lambda name: None)
    monkeypatch.setenv("HOME", str(tmp_path))  # neither keras' cache nor the grader's full copy in ~/.cache
    (_, _), (x_test, y_test) = data.load_dataset(name)
    assert x_test.shape == (5000, 28, 28)
    # a student's own machine: the public test images stand in (same shape), no grading image
    assert np.array_equal(data.grading_images(name), view["x_test"])
    monkeypatch.setenv(data.GRADING_DIR_ENV, str(grading.images(name).parent))  # what the grader stages
    assert np.array_equal(data.grading_images(name), np.load(grading.images(name)))
    with pytest.raises(data.DataUnavailable, match="grading labels are the grader's"):
        data.grading_labels(name)
    with pytest.raises(data.DataUnavailable, match="students' view .* not the full copy"):
        data.load_offline(name)
    # the checker takes labels of the right shape only
    monkeypatch.setattr(data, "_checker_labels", {})
    np.save(tmp_path / f"{name}.npy", np.full(5000, 12, np.uint8))
    assert data.take_grading_labels(tmp_path) == []
    shutil.copyfile(grading.labels(name), tmp_path / f"{name}.npy")
    assert data.take_grading_labels(tmp_path) == [name]
    assert np.array_equal(data.grading_labels(name), np.load(grading.labels(name)))


@pytest.mark.parametrize("name", data.DATASETS)
def test_the_secret_order_is_not_the_public_one(name, tmp_path):
    """A table of labels in the public order (any laptop can make it) lines up with nothing."""
    grading = gradingsplit.course_secret(tmp_path)
    assert (tmp_path / ".graders" / "grading-secret").stat().st_mode & 0o777 == 0o600
    built = gradingsplit.build(grading)
    secret_labels, public_labels = np.load(built.labels(name)), data.grading_labels(name)
    secret_images, public_images = np.load(built.images(name)), data.grading_images(name)
    assert sorted(secret_labels) == sorted(public_labels)  # the same images, another order
    assert np.mean(secret_labels == public_labels) < 0.15  # what pasted labels would score: chance
    (_, _), (x_test, y_test) = data.load_offline(name)
    graded = data.grading_split()[0]
    order = [int(np.argmin(np.abs(x_test[graded].astype(int) - image).sum(axis=(1, 2)))) for image in secret_images[:50]]
    assert np.array_equal(y_test[graded][order], secret_labels[:50])  # each image with its own label
    assert not any(np.array_equal(a, b) for a, b in zip(secret_images[:50], public_images[:50]))
    # the noise is the secret's too: no image of the public set's bytes
    public_hashes = {hashlib.sha256(image.tobytes()).digest() for image in public_images}
    assert not any(hashlib.sha256(image.tobytes()).digest() in public_hashes for image in secret_images)
    other = gradingsplit.build(gradingsplit.make_secret(tmp_path / "another", replace=True))
    assert other.key != built.key and not np.array_equal(np.load(other.labels(name)), secret_labels)


def test_every_machine_derives_the_same_grading_set(tmp_path, monkeypatch):
    """A worker (another cache, the same secret) has the client's set, or refuses to grade."""
    secret = gradingsplit.make_secret(tmp_path / "secret")
    here, full = gradingsplit.build(secret), {name: data.cache_path(name) for name in data.DATASETS}
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "worker"))  # another machine: its data cache,
    monkeypatch.setenv(data.GRADER_DIR_ENV, str(tmp_path / "worker-grader"))  # and its grader's own folder
    (tmp_path / "worker").mkdir()
    for name, path in full.items():
        (tmp_path / "worker" / f"{name}.npz").symlink_to(path)
    there = gradingsplit.build(secret, expected=here.digests)
    assert there.digests == here.digests and there.folder != here.folder
    with pytest.raises(data.DataUnavailable, match="grading set differs from the grader's"):
        gradingsplit.build(secret, expected={"mnist": {"images": "0" * 64, "labels": "0" * 64}})
    (tmp_path / "loose").write_text(secret.hex())
    (tmp_path / "loose").chmod(0o644)
    with pytest.raises(data.DataUnavailable, match="readable by others: chmod 600"):
        gradingsplit.read_secret(tmp_path / "loose")


def test_a_kept_export_is_rechecked_only_under_the_secret_it_was_made_with(tmp_path):
    """The kernel preprocessed the grading images in the secret's order: another secret grades in full."""
    made = {"submission": "s", "grading secret": gradingsplit.key_id(b"a" * 32)}
    manifest = json.dumps({"fingerprint": made, "files": {}, "checked": {}}).encode()
    (tmp_path / recheck.MANIFEST).write_bytes(manifest)
    recorded = hashlib.sha256(manifest).hexdigest()
    assert recheck.plan(tmp_path, recorded, made, tmp_path, [], ("a", "b"), {})[0] == ""
    now = {**made, "grading secret": gradingsplit.key_id(b"b" * 32)}
    assert recheck.plan(tmp_path, recorded, now, tmp_path, [], ("a", "b"), {})[0] == "changed since it was graded: grading secret"


def test_the_disk_search_probe_finds_the_labels_where_they_are(tmp_path):
    """The hostile probe that must find nothing in the sandbox finds them in a folder laid out as the
    grader's cache: its offline copy and a grading set (the cache itself holds one set per course
    ever graded on the machine: a scan of it takes seconds per set)."""
    shutil.copy(data.cache_path("mnist"), tmp_path)
    grading_set = next(path for path in sorted((data.grader_dir() / "grading").glob("*/labels")) if (path / "mnist.npy").exists())
    shutil.copytree(grading_set, tmp_path / "grading" / "labels")
    output = []
    code = corpus.search_labels(str(tmp_path)).replace("print(", "output.append((")
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


def test_a_missing_or_altered_view_or_secret_stops_grading_in_one_line(tmp_path, monkeypatch):
    view = data.students_dir() / "mnist.npz"
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DataUnavailable, match=r"^offline MNIST missing at .*public/mnist.npz: build it with: python -m graders data$"):
        data.load_view("mnist")
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "mnist.npz").symlink_to(view)
    data.load_view("mnist")
    with pytest.raises(data.DataUnavailable, match=r"^no grading secret at .*: python -m graders data"):
        gradingsplit.course_secret(tmp_path, configured=str(tmp_path / "the-instructors"))  # never made for them
    (tmp_path / "bad").write_text("not hex")
    (tmp_path / "bad").chmod(0o600)
    with pytest.raises(data.DataUnavailable, match=r"is not a grading secret \(64 hex digits\)"):
        gradingsplit.read_secret(tmp_path / "bad")


def test_large_literal_data_is_a_notice_in_the_class_report(batch_class, tmp_path):
    """The pasted labels are flagged for a TA; no honest student is."""
    from graders.outputs import literals, report

    submitted = batch_class.directory / "submitted"
    flagged = {folder.name for folder in submitted.iterdir() if literals.notices(folder / "lesson08")}
    assert "cheat-giveaways-by-public-order" in flagged
    assert not flagged & {"reference", "stderr-noise", "fashion-mnist", "mnist-weak", "trained-also-on-test"}, flagged
    page = report.write_report(batch_class.directory, "lesson08", tmp_path).read_text()
    assert "Large literal data" in page and "cheat-giveaways-by-public-order" in page
