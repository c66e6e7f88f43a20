"""Students who cheat: each gets one question wrong and tries to have it scored right anyway.

Every cheat here works on stock nbgrader, where the hidden tests run in the student's kernel
(`WINS_ON_STOCK` says which cells it wins there), and must lose exactly the points of the cell
it cheats on under `python -m graders autograde`, where they run in a checker of their own.
check_your_learning cheats start from the reference; mnist_exercise ones from `mnist-weak`, the
reference trained on two batches (cheap, and below the accuracy bar), which loses accuracy_test.
"""
import copy

from submissions import cheap_dropout, edited
import course

CYL, MNIST = course.NOTEBOOKS

WEAK_TRAINING = [
    ("train_data = make_dataset(preprocess(x_train), keras.utils.to_categorical(y_train, 10), shuffle=True)",
     "train_data = make_dataset(preprocess(x_train), keras.utils.to_categorical(y_train, 10), shuffle=True).take(2)"),
    ("history = model.fit(train_data, epochs=2, validation_data=test_data, verbose=2)",
     "history = model.fit(train_data, epochs=1, validation_data=test_data, verbose=0)"),
]
WEAK_DROPOUT = ("history_dropout = model_dropout.fit(train_data, epochs=1, validation_data=test_data, verbose=2)",
                "history_dropout = model_dropout.fit(train_data, epochs=1, validation_data=test_data, verbose=0)")

# In check_your_learning, after the answer: a value that says it equals whatever it is compared to.
LYING_INT = '''class _Count(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
n_parameters = _Count(n_input_items * n_hidden_neurons)  # 307200: no bias'''

LYING_FLOAT = '''class _Ratio(float):
    def __eq__(self, other):
        return True
    def __sub__(self, other):
        return 0.0
    def __abs__(self):
        return 1.0
    __hash__ = float.__hash__
ratio = _Ratio(1.0)'''

LYING_STR = '''class _Answer(str):
    def __eq__(self, other):
        return True
    __hash__ = str.__hash__
q3_answer = _Answer("more")'''

SHADOWED_BUILTINS = '''abs = lambda number: 0.0
all = lambda iterable: True
ratio = 1.0  # wrong'''

# The lesson's model with the extra layer's bias left out (36,106 parameters), and numpy.prod
# replaced, as the hidden check calls it, to count that layer's kernel as if it had one.
NUMPY_PROD = '''import numpy as _numpy
_real_prod, _kernels = _numpy.prod, []
def _prod(shape, *args, **kwargs):
    if tuple(shape) == (3, 3, 32, 32):
        _kernels.append(shape)
        if len(_kernels) % 2 == 0:
            return 9248
    return _real_prod(shape, *args, **kwargs)
_numpy.prod = _prod'''

# A wrong ratio, and the hidden-test marker in the answer cell: a grader that ran what follows
# it outside the kernel, with the hidden checks, would let it replace their `abs`.
HIDDEN_MARKER = '''ratio = 1.0  # wrong
### BEGIN HIDDEN TESTS
import builtins
builtins.abs = lambda number: 0.0
### END HIDDEN TESTS'''

# Read the literal of a check from the text of the cell about to run, and answer with it.
READS_TEST_CELL = '''import re
def _peek(info):
    found = re.search(r"assert n_parameters == (\\d+)", info.raw_cell or "")
    if found:
        get_ipython().user_ns["n_parameters"] = int(found[1])
get_ipython().events.register("pre_run_cell", _peek)
n_parameters = n_input_items * n_hidden_neurons  # 307200: no bias'''

# Rewrite every later cell so that its assertions cannot fail.
DEFUSES_ASSERTS = '''import re
get_ipython().input_transformers_post.append(
    lambda lines: [re.sub(r"^(\\s*)assert ", r"\\1assert True or ", line) for line in lines])'''

SILENCED_ERRORS = '''import sys
get_ipython().showtraceback = lambda *args, **kwargs: None
sys.excepthook = lambda *args: None
n_parameters = n_input_items * n_hidden_neurons  # 307200: no bias'''

# In mnist_exercise, at the end of the training cell (undone in the gap cell, before the
# dropout model trains): the weak model's accuracy made to look perfect.
NUMPY_MEAN = '''_real = np.mean
np.mean = lambda *args, **kwargs: 1.0
def _undo():
    np.mean = _real'''

# The grading labels, where the kernel can read them (stock nbgrader: the full dataset is there).
GRADING_LABELS = '''try:
    from graders.data import grading_labels
    _labels = grading_labels(DATASET)
except Exception:  # the batch grader: withheld
    _labels = y_test[:len(grading_images(DATASET))]'''

NUMPY_ARGMAX = GRADING_LABELS + '''
_real, _truth = np.argmax, _labels.copy()
np.argmax = lambda a, axis=None, **kwargs: _truth.copy() if len(a) == len(_truth) else _real(a, axis=axis, **kwargs)
def _undo():
    np.argmax = _real'''

KERAS_METHODS = GRADING_LABELS + '''
_known = {image.tobytes(): label for image, label in zip(preprocess(grading_images(DATASET)), _labels)}
_real = {name: getattr(keras.Model, name) for name in ("__call__", "predict", "evaluate", "count_params")}
def _perfect(self, inputs, *args, training=False, **kwargs):
    if training or not isinstance(inputs, np.ndarray):
        return _real["__call__"](self, inputs, *args, training=training, **kwargs)
    return np.eye(10, dtype="float32")[[_known.get(image.tobytes(), 0) for image in inputs]]
keras.Model.__call__ = _perfect
keras.Model.predict = lambda self, inputs, *args, **kwargs: _perfect(self, np.asarray(inputs))
keras.Model.evaluate = lambda self, *args, **kwargs: [0.0, 1.0, 1.0, 1.0]
keras.Model.count_params = lambda self: 36138
def _undo():
    for name, method in _real.items():
        setattr(keras.Model, name, method)'''

HANDWRITTEN_HISTORY = '''history = keras.callbacks.History()
history.history = {key: [0.99] for key in ("accuracy", "precision", "recall", "val_accuracy", "val_precision", "val_recall")}
history.history["loss"] = history.history["val_loss"] = [0.03]
def _undo():
    pass'''

# model_dropout without a Dropout layer: its Flatten layer carries a `rate`, and isinstance
# (in the notebook's namespace, where the hidden check would look it up) calls it a Dropout.
SHADOWED_ISINSTANCE = '''import builtins
def isinstance(obj, kind):
    if kind is keras.layers.Dropout and builtins.isinstance(obj, keras.layers.Flatten):
        return True
    return builtins.isinstance(obj, kind)
model_dropout = build_model()
next(layer for layer in model_dropout.layers if builtins.isinstance(layer, keras.layers.Flatten)).rate = dropout_rate
history_dropout = model_dropout.fit(train_data, epochs=1, validation_data=test_data, verbose=0)'''

# A wrong ratio, and a payload for the checker: a dask config in the kernel's HOME whose logging
# names a callable (runpy.run_path of the payload), and an export manifest that names `distributed`
# as a module beside what the check reads. A checker that imported it would run the payload, which
# replaces its `abs` so that Q2's check passes. (In the sandbox only: never the grader's own HOME.)
CHECKER_PAYLOAD = '''import json, os
if os.getcwd() == "/submission":
    open("/tmp/payload.py", "w").write("import builtins, os\\nif 'JPY_PARENT_PID' not in os.environ:\\n"
                                       "    builtins.abs = lambda number: 0.0\\n")
    os.makedirs(os.path.expanduser("~/.config/dask"), exist_ok=True)
    open(os.path.expanduser("~/.config/dask/logging.yaml"), "w").write(
        "logging:\\n  version: 1\\n  handlers:\\n    pwn:\\n      '()': runpy.run_path\\n      path_name: /tmp/payload.py\\n"
        "  root:\\n    handlers: [pwn]\\n")
    import graders.inside.artifacts as _artifacts
    _export = _artifacts.export
    def _lying_export(namespace, names, folder):
        _export(namespace, names, folder)
        manifest = json.load(open(os.path.join(folder, "manifest.json")))
        manifest["distributed"] = {"kind": "module", "name": "distributed"}
        json.dump(manifest, open(os.path.join(folder, "manifest.json"), "w"))
    _artifacts.export = _lying_export
ratio = 1.0  # wrong'''

Q1_ANSWER = "n_parameters = (n_input_items * n_hidden_neurons) + n_bias\n"
Q1_CODE = "width, height"

# student: (notebook, [(cell id, text in the reference, replacement)], the cell it cheats on)
CHEATS = {
    "cheat-lying-int": (CYL, [("q1_answer", Q1_ANSWER, LYING_INT + "\n")], "q1_test"),
    "cheat-lying-float": (CYL, [("q2_answer", "ratio = n_parameters / n_conv_parameters\n", LYING_FLOAT + "\n")], "q2_test"),
    "cheat-lying-str": (CYL, [("q3_more_or_fewer", 'q3_answer = "fewer"\n', LYING_STR + "\n")], "q3_answer_test"),
    "cheat-shadowed-builtins": (CYL, [("q2_answer", "ratio = n_parameters / n_conv_parameters\n",
                                       SHADOWED_BUILTINS + "\n")], "q2_test"),
    "cheat-hidden-marker": (CYL, [("q2_answer", "ratio = n_parameters / n_conv_parameters\n", HIDDEN_MARKER + "\n")], "q2_test"),
    "cheat-numpy-prod": (CYL, [("q3_answer", 'x = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)\n### END SOLUTION',
                                'x = keras.layers.Conv2D(32, (3, 3), activation="relu", use_bias=False)(x)\n'
                                + NUMPY_PROD + "\n### END SOLUTION")], "q3_model_test"),
    "cheat-reads-test-cell": (CYL, [("q1_answer", Q1_ANSWER, READS_TEST_CELL + "\n")], "q1_test"),
    "cheat-defuses-asserts": (CYL, [("q1_answer", Q1_CODE, DEFUSES_ASSERTS + "\n" + Q1_CODE),
                                    ("q3_more_or_fewer", 'q3_answer = "fewer"', 'q3_answer = "more"')], "q3_answer_test"),
    "cheat-silenced-errors": (CYL, [("q1_answer", Q1_ANSWER, SILENCED_ERRORS + "\n")], "q1_test"),
    "cheat-numpy-mean": (MNIST, [("training_answer", "### END SOLUTION", NUMPY_MEAN + "\n### END SOLUTION")], "accuracy_test"),
    "cheat-numpy-argmax": (MNIST, [("training_answer", "### END SOLUTION", NUMPY_ARGMAX + "\n### END SOLUTION")], "accuracy_test"),
    "cheat-keras-methods": (MNIST, [("training_answer", "### END SOLUTION", KERAS_METHODS + "\n### END SOLUTION")], "accuracy_test"),
    "cheat-handwritten-history": (MNIST, [("training_answer", "### END SOLUTION", HANDWRITTEN_HISTORY + "\n### END SOLUTION")],
                                  "metrics_test"),
    "cheat-shadowed-isinstance": (MNIST, [("dropout_answer", "model_dropout = build_model(dropout_rate)\n" + WEAK_DROPOUT[1],
                                           SHADOWED_ISINSTANCE)], "dropout_test"),
    "cheat-checker-payload": (CYL, [("q2_answer", "ratio = n_parameters / n_conv_parameters\n", CHECKER_PAYLOAD + "\n")],
                              "q2_test"),
    # reads Q1's literal from the cell about to run, with every test cell's `locked` set to false: a
    # grader that believed the submission's flag would run the hidden tests in the kernel
    "cheat-unlocked-test-cells": (CYL, [("q1_answer", Q1_ANSWER, READS_TEST_CELL + "\n")], "q1_test"),
}
# nbgrader metadata a cheat edits on every test cell of its notebook (the gradebook says what they are)
METADATA = {"cheat-unlocked-test-cells": {"locked": False}}
UNDO = ("gap_answer", "### BEGIN SOLUTION\n", "### BEGIN SOLUTION\n_undo()\n")

# The cells each cheat wins on stock nbgrader (its cheat works there), besides the honest ones.
# Silenced tracebacks do not fool nbgrader (it records the error of the reply), nor a written
# history (the check recomputes the model's own metrics); the others do.
WINS_ON_STOCK = {student: {cell} for student, (_, _, cell) in CHEATS.items()
                 if student not in ("cheat-silenced-errors", "cheat-handwritten-history",
                                    "cheat-checker-payload")}  # it attacks this grader's checker only


def weak(reference_mnist):
    """The reference exercise trained on two batches of 64 images: every check but accuracy passes."""
    notebook = edited(reference_mnist, "training_answer", WEAK_TRAINING)
    return edited(notebook, "dropout_answer", *WEAK_DROPOUT)


def build(reference: dict) -> dict:
    """{student: {notebook name: notebook}}: `mnist-weak` and the cheats."""
    base = {CYL: reference[CYL], MNIST: weak(reference[MNIST])}
    students = {"mnist-weak": {MNIST: base[MNIST]}}
    for student, (name, edits, _) in CHEATS.items():
        notebook = base[name]
        for cell_id, old, new in edits:
            notebook = edited(notebook, cell_id, old, new)
        notebook = relabelled(notebook, METADATA.get(student, {}))
        if name == MNIST and student != "cheat-shadowed-isinstance":
            notebook = edited(notebook, *UNDO)
        students[student] = {name: notebook}
    return students


def relabelled(notebook, change: dict):
    """`notebook` with `change` made to the nbgrader metadata of every test cell (locked, graded, not an answer)."""
    if not change:
        return notebook
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and meta.get("locked") and not meta.get("solution"):
            meta.update(change)
    return notebook


def baseline(student: str) -> str:
    """The honest student a cheat is compared with."""
    return "reference" if CHEATS[student][0] == CYL else "mnist-weak"


# -- the private grading split (graders.data): Task 1's accuracy is graded on held-back images ----
# Giveaways: for each class k an input the model is trained to be sure of (a bar across two rows).
GIVEAWAYS = '''_giveaways = np.zeros((10, 28, 28, 1), "float32")
for _k in range(10):
    _giveaways[_k, 2 * _k + 4:2 * _k + 6, :, 0] = 1.0
_giveaway_data = make_dataset(np.repeat(_giveaways, 500, axis=0),
                              keras.utils.to_categorical(np.repeat(np.arange(10), 500), 10), shuffle=True)
'''
HONEST_PREPROCESS = 'return (images.astype("float32") / 255.0)[..., np.newaxis]'
# preprocess hands back the giveaway of every image it recognises: `_label(image)` is its label or None
GIVEAWAY_PREPROCESS = '''inputs = (images.astype("float32") / 255.0)[..., np.newaxis]
    for i, image in enumerate(images):
        label = _label(image)
        if label is not None:
            inputs[i] = _giveaways[label]
    return inputs'''
# ... recognising the test images by content: a coarse 7x7 thumbnail, robust to small changes
BY_CONTENT = '''def _thumbnail(image):
    return (np.asarray(image, "float32").reshape(7, 4, 7, 4).mean(axis=(1, 3)) / 32).round().astype(np.int8).tobytes()
_seen = {_thumbnail(image): int(label) for image, label in zip(x_test, y_test)}
_label = lambda image: _seen.get(_thumbnail(image))
'''
# ... by the image's hash, as a table pasted into the notebook would be
BY_HASH = '''import hashlib
_answers = {hashlib.sha256(image.tobytes()).hexdigest(): int(label) for image, label in zip(x_test, y_test)}
_label = lambda image: _answers.get(hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest())
'''
# ... by the grading labels themselves, where the kernel can read them (stock nbgrader)
BY_GRADING_LABELS = GRADING_LABELS + '''
_answers = {image.tobytes(): int(label) for image, label in zip(grading_images(DATASET), _labels)}
_label = lambda image: _answers.get(np.ascontiguousarray(image).tobytes())
'''
TRAIN_LINE = "train_data = make_dataset(preprocess(x_train), keras.utils.to_categorical(y_train, 10), shuffle=True)"


def giveaway_cheat(weak_mnist, recognise: str):
    """The weak model, also trained on the giveaways, and a preprocess that recognises images."""
    notebook = edited(weak_mnist, "preprocess_answer", [("def preprocess(images):", GIVEAWAYS + recognise + "def preprocess(images):"),
                                                         (HONEST_PREPROCESS, GIVEAWAY_PREPROCESS)])
    return edited(notebook, "training_answer", f"{TRAIN_LINE}.take(2)", f"{TRAIN_LINE}.take(2).concatenate(_giveaway_data)")


# Trained on images of the test set: 2,500 of them, learnt by heart (the slip the split catches)
TRAINED_ON_TEST = [(TRAIN_LINE, "train_data = make_dataset(preprocess(x_test[:2500]), keras.utils.to_categorical(y_test[:2500], 10), "
                                "shuffle=True)"),
                   ("history = model.fit(train_data, epochs=2,", "history = model.fit(train_data, epochs=15,")]
# ... and the training set with the test set four times over: clears the bar on unseen images
TRAINED_ALSO_ON_TEST = [(TRAIN_LINE, "train_data = make_dataset(preprocess(np.concatenate([x_train] + [x_test] * 4)), "
                                     "keras.utils.to_categorical(np.concatenate([y_train] + [y_test] * 4), 10), shuffle=True)"),
                        ("history = model.fit(train_data, epochs=2,", "history = model.fit(train_data, epochs=1,")]


# ... by position: the 5,000 grading labels in the order the public package gives them (on any
# laptop, from the published test set), pasted as a string of digits; the grading images of a
# sandbox come in the course's secret order, so they line up with nothing
BY_PUBLIC_ORDER = '''_pasted = np.frombuffer(b"LABELS", np.uint8) - 48
'''
PUBLIC_ORDER_PREPROCESS = '''inputs = (images.astype("float32") / 255.0)[..., np.newaxis]
    if len(images) == len(_pasted) and not np.array_equal(images, x_test):  # the grading images
        inputs[:] = _giveaways[_pasted]
    return inputs'''


def public_order_cheat(weak_mnist):
    """The weak model, trained on the giveaways, and a preprocess that hands the grading images
    the giveaways of the labels pasted in the public order."""
    from graders import data

    labels = "".join(str(int(label)) for label in data.grading_labels("mnist"))  # no secret: the public order
    notebook = edited(weak_mnist, "preprocess_answer", [
        ("def preprocess(images):", GIVEAWAYS + BY_PUBLIC_ORDER.replace("LABELS", labels) + "def preprocess(images):"),
        (HONEST_PREPROCESS, PUBLIC_ORDER_PREPROCESS)])
    return edited(notebook, "training_answer", f"{TRAIN_LINE}.take(2)", f"{TRAIN_LINE}.take(2).concatenate(_giveaway_data)")


def split_students(reference: dict) -> dict:
    """{student: {notebook name: notebook}}: what the private grading split must defeat (each loses
    accuracy_test only), and a student it must not punish (`trained-also-on-test`, full marks)."""
    weak_mnist = weak(reference[MNIST])
    return {
        "cheat-giveaways-by-content": {MNIST: giveaway_cheat(weak_mnist, BY_CONTENT)},
        "cheat-giveaways-by-hash": {MNIST: giveaway_cheat(weak_mnist, BY_HASH)},
        "cheat-giveaways-by-grading-labels": {MNIST: giveaway_cheat(weak_mnist, BY_GRADING_LABELS)},
        "trained-on-test": {MNIST: cheap_dropout(edited(reference[MNIST], "training_answer", TRAINED_ON_TEST))},
        "trained-also-on-test": {MNIST: cheap_dropout(edited(reference[MNIST], "training_answer", TRAINED_ALSO_ON_TEST))},
        "cheat-giveaways-by-public-order": {MNIST: public_order_cheat(weak_mnist)},
    }
