"""nbgrader's collect, except that a hand-in is never taken from a folder another account made.

Students hand in by making a folder ``STUDENT+ASSIGNMENT+TIMESTAMP`` in the exchange's
``inbound``, which every student may write into. nbgrader picks each student's latest folder by
the name alone and, when its owner is someone else, only warns ("cheating attempt?") and
collects it anyway: bob can hand in under alice's name (a blank notebook, or a hostile one),
and with a timestamp in the future his folder stays "alice's latest" for good. This collect
(the course sets ``c.ExchangeFactory.collect`` to it, so ``nbgrader collect``, Formgrader's
Collect button and ``python -m graders watch`` all use it) drops such folders before the latest
is chosen, with a warning naming the owner: alice's own latest hand-in is collected. With
``c.ExchangeCollect.check_owner = False`` (one account for everyone) it is nbgrader's own.
"""
import os
import pwd

from nbgrader.exchange.default.collect import ExchangeCollect


class OwnerCheckedCollect(ExchangeCollect):
    def owner_if_forged(self, record: dict) -> str:
        """The account that made the hand-in folder, when it is not the student the name claims; else ""."""
        if not self.check_owner:
            return ""
        try:
            uid = os.stat(os.path.join(self.inbound_path, record["filename"]), follow_symlinks=False).st_uid
            owner = pwd.getpwuid(uid).pw_name
        except KeyError:
            owner = "an unknown account"
        except OSError:
            return ""  # gone: nbgrader says so when it copies
        return "" if owner == record["username"] else owner

    def _sort_by_timestamp(self, records):
        """nbgrader's newest-first order, with the folders other accounts made last (dropped by init_src)."""
        owners = {record["filename"]: self.owner_if_forged(record) for record in records}
        self.forged.update({record["filename"]: (record["username"], owners[record["filename"]])
                            for record in records if owners[record["filename"]]})
        return sorted(super()._sort_by_timestamp(records), key=lambda record: bool(owners[record["filename"]]))

    def init_src(self):
        self.forged = {}  # {hand-in folder: (the student it names, the account that made it)}, when those differ
        super().init_src()
        self.src_records = [record for record in self.src_records if record["filename"] not in self.forged]
        for name, (student, owner) in sorted(self.forged.items()):
            self.log.warning(f"{name!r} claims to be {student}'s hand-in but was made by {owner}: "
                             "not collected (a cheating attempt?)")
