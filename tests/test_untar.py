"""What the sandbox and the checker unpack is data only on every Python 3.11, Debian's 3.11.2
(no tarfile "data" filter: what ordinary accounts run) included."""
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from graders.inside import artifacts, untar

ROOT = Path(__file__).resolve().parents[1]


def archive(*members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type, info.mode = kind, 0o4777
            if kind == tarfile.REGTYPE:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.linkname = payload
                tar.addfile(info)
    return buffer.getvalue()


ABSOLUTE = f"/tmp/onions-untar-{os.getpid()}.txt"
GOOD = [("a", tarfile.DIRTYPE, ""), ("a/one.txt", tarfile.REGTYPE, b"1"), ("a/two.txt", tarfile.LNKTYPE, "a/one.txt")]
HOSTILE = {"a link out": ("out", tarfile.SYMTYPE, "/etc/passwd"), "a path up": ("../up.txt", tarfile.REGTYPE, b"x"),
           "an absolute path": (ABSOLUTE, tarfile.REGTYPE, b"x"), "a device": ("dev", tarfile.CHRTYPE, ""),
           "a hard link out": ("h", tarfile.LNKTYPE, "/etc/passwd")}


@pytest.fixture(params=["this Python", "without the data filter"])
def python(request, monkeypatch):
    if request.param != "this Python":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def test_plain_data_unpacks_without_its_mode_bits(python, tmp_path):
    with tarfile.open(fileobj=io.BytesIO(archive(*GOOD)), mode="r|") as tar:
        untar.extract(tar, tmp_path)
    assert (tmp_path / "a/one.txt").read_text() == (tmp_path / "a/two.txt").read_text() == "1"
    assert not (tmp_path / "a/one.txt").stat().st_mode & 0o4000


@pytest.mark.parametrize("kind", HOSTILE)
def test_anything_else_is_refused_or_kept_inside_as_a_plain_file(python, kind, tmp_path):
    (tmp_path / "in").mkdir()
    try:
        with tarfile.open(fileobj=io.BytesIO(archive(HOSTILE[kind])), mode="r|") as tar:
            untar.extract(tar, tmp_path / "in")
    except tarfile.TarError:
        pass
    inside = list((tmp_path / "in").rglob("*"))
    assert all(path.is_file() and not path.is_symlink() or path.is_dir() for path in inside), inside
    assert not (tmp_path / "up.txt").exists() and not Path(ABSOLUTE).exists()


@pytest.mark.skipif(not Path("/usr/bin/python3").is_file(), reason="no system Python")
def test_the_system_python_unpacks_an_export(tmp_path):
    for name in ("one", "two"):  # identical files: packed as a file and a hard link to it
        (tmp_path / "exports" / "000").mkdir(parents=True, exist_ok=True)
        (tmp_path / "exports" / "000" / f"{name}.npy").write_bytes(b"x" * 100)
    (tmp_path / "packed.tar.xz").write_bytes(artifacts.pack(tmp_path / "exports", [0]))
    script = ("import sys; from graders.inside import artifacts; "
              "artifacts.unpack(open(sys.argv[1], 'rb').read(), sys.argv[2]); print('ok')")
    done = subprocess.run(["/usr/bin/python3", "-c", script, str(tmp_path / "packed.tar.xz"), str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr
    assert (tmp_path / "out" / "000" / "two.npy").read_bytes() == b"x" * 100
