"""graders.isolation.sandbox without running a sandbox: sizes, and bubblewrap's command line."""
from pathlib import Path

import pytest

from graders.isolation import sandbox


@pytest.mark.parametrize("text, size", [("4G", 4 << 30), ("512M", 512 << 20), ("3g", 3 << 30), ("4GB", 4 << 30),
                                        (" 2k ", 2048), ("1.5G", 3 << 29), ("1T", 1 << 40), ("1024", 1024)])
def test_parse_size_reads_units_case_and_plain_bytes(text, size):
    assert sandbox.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "G", "4X", "4GiB"])
def test_parse_size_refuses_what_is_not_a_size_with_a_value_error(text):
    with pytest.raises(ValueError):
        sandbox.parse_size(text)


def flag_args(command, flag, count):
    """The `count` arguments after each occurrence of `flag` before the `--` that starts argv."""
    options = command[:command.index("--")]
    return [tuple(options[i + 1:i + 1 + count]) for i, word in enumerate(options) if word == flag]


@pytest.fixture
def bwrap(tmp_path):
    def build(user_namespace, **kw):
        return sandbox.bwrap_command(["python", "run.py"], tmp_path / "work", tmp_path / "data",
                                     {"OMP_NUM_THREADS": "2", "HOME": "/home/grader"},
                                     {"/tmp/matplotlib/fontlist.json": tmp_path / "fonts.json"},
                                     user_namespace=user_namespace, **kw)
    return build


def test_bwrap_unshares_user_and_forbids_nested_namespaces_only_in_a_user_namespace(bwrap):
    inside, as_root = bwrap(True), bwrap(False)
    assert {"--unshare-user", "--disable-userns"} <= set(inside[:inside.index("--")])
    assert not {"--unshare-user", "--disable-userns"} & set(as_root)
    for command in (inside, as_root):
        assert {"--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--clearenv"} <= set(command)


def test_bwrap_only_submission_and_the_tmpfs_folders_are_writable_and_none_is_the_graders_disk(bwrap, tmp_path):
    command = bwrap(True, tmpfs_bytes=123 << 20, disk_bytes=45 << 20)
    assert flag_args(command, "--bind", 2) == []  # the working copy is unpacked into a tmpfs: graders.isolation.handover
    assert flag_args(command, "--chdir", 1) == [("/submission",)]
    hidden = [folder for (folder,) in flag_args(command, "--remount-ro", 1) if folder not in ("/", "/dev")]
    assert hidden == sandbox.hidden_folders([*sandbox.SHOWN_TOPS, *sandbox._python_paths()])  # dataset folders: read-only
    assert [f for (f,) in flag_args(command, "--tmpfs", 1) if f not in hidden] == ["/tmp", "/dev/shm", "/submission"]
    assert flag_args(command, "--size", 3) == [*((str(123 << 20), "--tmpfs", folder) for folder in sandbox.TMPFS),
                                               (str(45 << 20), "--tmpfs", "/submission")]
    assert not {"--dev-bind", "--bind-try", "--dev-bind-try"} & set(command)
    # the root and /dev are made read-only once everything is mounted on them
    remounts = [i for i, word in enumerate(command) if word == "--remount-ro" and command[i + 1] in ("/", "/dev")]
    assert sorted(command[i + 1] for i in remounts) == ["/", "/dev"]
    mounts = [i for i, word in enumerate(command) if word in ("--bind", "--ro-bind", "--tmpfs", "--dir", "--symlink")]
    assert max(mounts) < min(remounts)


def test_bwrap_shows_data_files_and_the_package_read_only_and_never_the_course(bwrap, tmp_path):
    command = bwrap(True)
    read_only = flag_args(command, "--ro-bind", 2)
    assert (str(tmp_path / "data"), "/data") in read_only
    assert (str(tmp_path / "fonts.json"), "/tmp/matplotlib/fontlist.json") in read_only
    assert (str(sandbox.PACKAGE), sandbox.PACKAGE_INSIDE) in read_only
    assert ("1777", "--dir", "/tmp/matplotlib") in flag_args(command, "--perms", 3)  # a folder anyone may write
    course_source = sandbox.PACKAGE.parent / "source"
    for host, _ in read_only + flag_args(command, "--bind", 2):
        assert not course_source.is_relative_to(host), f"{host} shows the course's source/"
        assert not Path.home().is_relative_to(host), f"{host} shows the home directory"


def test_bwrap_sets_the_environment_and_runs_argv_last(bwrap):
    command = bwrap(False)
    env = dict(flag_args(command, "--setenv", 2))
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["HOME"] == "/tmp" and env["ONIONS_DATA_DIR"] == "/data"  # the grader's own HOME is overridden
    assert env["PATH"].endswith(":/usr/bin:/bin")
    assert command.index("--clearenv") < command.index("--setenv")
    assert command[command.index("--"):] == ["--", "python", "run.py"]
