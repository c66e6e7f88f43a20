"""graders.edges.collect on a real inbound folder: a hand-in folder made by another account than
the student it names is never chosen, and a warning names both (the exchange test plants one too)."""
import logging
import os
import pwd
import sys
from pathlib import Path

import pytest
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from graders.edges.collect import OwnerCheckedCollect

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another account")


def test_a_folder_another_account_made_is_dropped_before_the_latest_is_chosen(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the gradebook's alembic
    me, other = pwd.getpwuid(os.getuid()).pw_name, pwd.getpwnam("nobody")
    inbound = tmp_path / "exchange" / "course" / "inbound"
    inbound.mkdir(parents=True)
    mine = inbound / f"{me}+ps1+2026-12-01 10:00:00.000000 UTC+a1"
    forged = inbound / f"{me}+ps1+2099-01-01 00:00:00.000000 UTC+b2"
    theirs = inbound / "nobody+ps1+2026-12-01 11:00:00.000000 UTC+c3"
    for folder in (mine, forged, theirs):
        folder.mkdir()
    os.chown(forged, other.pw_uid, other.pw_gid)  # made by nobody, named as mine
    os.chown(theirs, other.pw_uid, other.pw_gid)
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.course_id = "course"
    config.CourseDirectory.assignment_id = "ps1"
    config.CourseDirectory.db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    config.Exchange.root = str(tmp_path / "exchange")
    collect = OwnerCheckedCollect(coursedir=CourseDirectory(config=config), config=config)
    with caplog.at_level(logging.WARNING):
        collect.init_src()
    chosen = sorted(record["filename"] for record in collect.src_records)
    assert chosen == sorted([mine.name, theirs.name])  # my own latest, and nobody's own
    warned = [r.getMessage() for r in caplog.records if "claims to be" in r.getMessage()]
    assert warned == [f"{forged.name!r} claims to be {me}'s hand-in but was made by nobody: not collected (a cheating attempt?)"]
