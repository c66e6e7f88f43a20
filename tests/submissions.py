"""The class the tests grade: the reference solution, the untouched release, and students who
each get one thing wrong (or are noisy on stderr). Each is made from the source notebooks by
replacing text in one cell, so the difference from the reference is exactly that edit (and,
to save time, a dropout model trained on two batches and a main model trained one epoch where
the wrong answer is about neither).
"""
import copy

import course

CYL, MNIST = course.NOTEBOOKS

# student: (notebook, cell id, text in the reference, replacement, the grade cells that must fail);
# several edits of one cell are given as a list of (text, replacement) pairs.
WRONG_ANSWERS = {
    "q1-no-bias": (CYL, "q1_answer", "n_parameters = (n_input_items * n_hidden_neurons) + n_bias",
                   "n_parameters = n_input_items * n_hidden_neurons", {"q1_test"}),  # 307200
    "q1-inputs-only": (CYL, "q1_answer", "n_parameters = (n_input_items * n_hidden_neurons) + n_bias",
                       "n_parameters = n_input_items", {"q1_test"}),  # 3072
    "q2-with-bias": (CYL, "q2_answer", "n_conv_parameters = n_kernels * kernel_height * kernel_width * kernel_channels",
                     "n_conv_parameters = n_kernels * (kernel_height * kernel_width * kernel_channels + 1)",
                     {"q2_test"}),  # 2800
    "q3-no-extra-layer": (CYL, "q3_answer",
                          '### BEGIN SOLUTION\nx = keras.layers.Conv2D(32, (3, 3), activation="relu")(x)\n### END SOLUTION\n',
                          "", {"q3_model_test"}),  # the lesson's model: 47,370 parameters
    "q3-more": (CYL, "q3_more_or_fewer", 'q3_answer = "fewer"', 'q3_answer = "more"', {"q3_answer_test"}),
    "untrained-model": (MNIST, "training_answer",
                        "history = model.fit(train_data, epochs=2, validation_data=test_data, verbose=2)",
                        "history = model.fit(train_data.take(2), epochs=1, validation_data=test_data, verbose=2)\n"
                        "model = build_model()  # a fresh, untrained model",
                        {"accuracy_test", "metrics_test"}),  # history is no longer model's (two batches: cheap)
    "no-precision-recall": (MNIST, "training_answer",
                            'metrics = ["accuracy", keras.metrics.Precision(name="precision"), '
                            'keras.metrics.Recall(name="recall")]', 'metrics = ["accuracy"]', {"metrics_test"}),
    "metrics-on-logits": (MNIST, "training_answer", [
        ('outputs = keras.layers.Dense(10, activation="softmax")(x)', "outputs = keras.layers.Dense(10)(x)"),
        ('loss="categorical_crossentropy"', "loss=keras.losses.CategoricalCrossentropy(from_logits=True)"),
    ], {"metrics_test"}),  # trains well, but keras' Precision/Recall then threshold logits
    "no-dropout-layer": (MNIST, "dropout_answer", "model_dropout = build_model(dropout_rate)",
                         "model_dropout = build_model()", {"dropout_test"}),
}

# Students who choose Fashion-MNIST in the `dataset` cell (graded offline from the verified cache
# where keras cannot download): {student: ({cell id: (text in the reference, replacement)}, the
# grade cells that must fail)}. The reference solution clears the 0.84 bar; ten training batches
# of 64 images (640 of the 60,000) do not, and every other answer stays right.
FASHION = ('DATASET = "mnist"', 'DATASET = "fashion_mnist"')
FASHION_STUDENTS = {
    "fashion-mnist": ({}, set()),
    "fashion-mnist-undertrained": ({"training_answer": (
        "train_data = make_dataset(preprocess(x_train), keras.utils.to_categorical(y_train, 10), shuffle=True)",
        "train_data = make_dataset(preprocess(x_train), keras.utils.to_categorical(y_train, 10), shuffle=True).take(10)",
    )}, {"accuracy_test"}),
}

NOISE = b"E0000 00:00:1795614480.1 2063 meta_optimizer.cc:966] NodeDef mentions attribute use_unbounded_threadpool"

# TensorFlow-style noise on stderr while every later cell runs, the test cells included:
# from Python and, like TensorFlow's C++ logging, straight to file descriptor 2.
NOISY_CELLS = f'''import os, sys, time


def _noise(*_):
    os.write(2, {NOISE!r} + b"\\n")
    print("W0000 a warning on sys.stderr", file=sys.stderr)
    time.sleep(0.05)  # time for the kernel to forward what reached descriptor 2


get_ipython().events.register("pre_run_cell", _noise)
'''

# Noise from inside a function that the test cells call: all three ways to reach stderr.
NOISY_PREPROCESS = f'''def preprocess(images):
    import os, sys, time, warnings
    os.write(2, {NOISE!r} + b"\\n")
    print("W0000 a warning on sys.stderr", file=sys.stderr)
    warnings.warn("a Python warning from preprocess")
    time.sleep(0.05)
'''

# Appended to a notebook: keras' precision and recall next to numpy's, for the tests to compare.
METRICS_PROBE = '''import json
_probabilities = np.concatenate([np.asarray(model(preprocess(x_test[i:i + 1000]), training=False))
                                 for i in range(0, len(x_test), 1000)])
_predicted, _truth = _probabilities > 0.5, keras.utils.to_categorical(y_test, 10).astype(bool)
_tp = int(np.sum(_predicted & _truth))
print("PROBE " + json.dumps({
    "numpy_precision": _tp / int(np.sum(_predicted)), "numpy_recall": _tp / int(np.sum(_truth)),
    "keras_precision": history.history["val_precision"][-1], "keras_recall": history.history["val_recall"][-1],
}))
'''


def cell(notebook, cell_id):
    return next(c for c in notebook.cells if c.get("id") == cell_id)


def edited(notebook, cell_id, old, new=None):
    notebook = copy.deepcopy(notebook)
    target = cell(notebook, cell_id)
    for text, replacement in ([(old, new)] if isinstance(old, str) else old):
        assert text in target.source, f"{cell_id} no longer contains {text!r}: update tests/submissions.py"
        target.source = target.source.replace(text, replacement)
    return notebook


FIT = "history = model.fit(train_data, epochs=2, validation_data=test_data, verbose=2)"


def one_epoch(notebook):
    """The main model trained one epoch instead of two: 0.977 on the MNIST grading images (measured,
    softmax or logits alike), over the 0.97 bar, and a third of a student's training less. For the
    students whose one wrong answer is not about accuracy."""
    return edited(notebook, "training_answer", FIT, FIT.replace("epochs=2", "epochs=1"))


DROPOUT_FIT = "history_dropout = model_dropout.fit(train_data, epochs=1, validation_data=test_data, verbose=2)"


def cheap_dropout(notebook):
    """The dropout model trained on two batches: what dropout_test checks (a Dropout layer at the
    rate, a history with validation accuracy) does not need an epoch, and it saves a third of a
    student's training. For the students whose one wrong answer lies elsewhere."""
    return edited(notebook, "dropout_answer", DROPOUT_FIT, DROPOUT_FIT.replace("fit(train_data,", "fit(train_data.take(2),"))


def build(course_dir) -> dict:
    """{student: {notebook name: notebook}} for the whole test class."""
    def load(folder, name):
        return course.read_notebook(course_dir / folder / course.ASSIGNMENT / f"{name}.ipynb")

    reference = {name: load("source", name) for name in course.NOTEBOOKS}
    students = {
        "reference": reference,
        "blank": {name: load("release", name) for name in course.NOTEBOOKS},
    }
    for student, (name, cell_id, *edits, failing) in WRONG_ANSWERS.items():
        notebook = edited(reference[name], cell_id, *edits)
        if name == MNIST:
            notebook = cheap_dropout(notebook if "accuracy_test" in failing else one_epoch(notebook))
        students[student] = {name: notebook}

    for student, (edits, _) in FASHION_STUDENTS.items():
        notebook = edited(reference[MNIST], "dataset", *FASHION)
        for cell_id, (old, new) in edits.items():
            notebook = edited(notebook, cell_id, old, new)
        students[student] = {MNIST: cheap_dropout(notebook)}  # Fashion's bar: the reference's two epochs

    noisy_cyl = edited(reference[CYL], "q1_answer", "width, height", NOISY_CELLS + "\nwidth, height")
    noisy_mnist = edited(cheap_dropout(one_epoch(reference[MNIST])), "preprocess_answer", "def preprocess(images):\n",
                         NOISY_PREPROCESS)
    probe = copy.deepcopy(cell(noisy_mnist, "gap_answer"))
    probe.update(id="metrics_probe", metadata={}, source=METRICS_PROBE, outputs=[], execution_count=None)
    noisy_mnist.cells.append(probe)
    students["stderr-noise"] = {CYL: noisy_cyl, MNIST: noisy_mnist}
    import cheats
    students.update(cheats.build(reference))
    return students
