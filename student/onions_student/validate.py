"""A Validate (button and ``nbgrader validate``) that judges by errors, as grading does.

nbgrader's Validator fails any test cell with stderr output, and TensorFlow writes warnings
there at random, so a correct notebook could be told it fails. The Validator's preprocessor
list is not configurable, but its Execute step takes the course's configuration through its
parent (``c.Validator.Execute``, so grading is untouched), and that includes the kernel's
command line: ``configure_validator`` starts the validating kernel with an output stream
that sends what is written to stderr (by Python or on file descriptor 2) as stdout. The text
still shows; a test fails only by raising, as in the self-check (``selfcheck``) and in
grading. Imported by the kernel: keep this module light.
"""
from ipykernel.iostream import OutStream


def stderr_as_stdout(session, pub_thread, name, **kwargs):
    """ipykernel's OutStream (IPKernelApp.outstream_class), with stderr published as stdout."""
    stream = OutStream(session, pub_thread, name, **kwargs)
    stream.name = "stdout"
    return stream


VALIDATING_KERNEL = ["--HistoryManager.hist_file=:memory:",  # nbclient's own default
                     f"--IPKernelApp.outstream_class={__name__}.stderr_as_stdout"]


def configure_validator(c) -> None:
    """Set up `c` (an nbgrader_config.py's config) so that stderr does not fail a validated cell."""
    c.Validator.Execute.extra_arguments = VALIDATING_KERNEL
