"""The answers a hidden check needs, as plain data: saved by the student's kernel, loaded by the checker.

A hidden check must not run in the student's kernel, where the student's code can have replaced
any function (numpy's, keras', the builtins) or made objects that lie (an int whose `==` is always
True). So after a test cell's public part has run, the kernel saves the names the hidden part
uses (`export`), and a process that has never run student code loads them (`load`) as objects
of its own making: exact JSON values for numbers, strings and their lists and dicts; `.npy`
files (no pickles) for arrays; `.keras` files loaded with `safe_mode=True` for models; a
History's `history` dict for a History. Anything else is refused with the reason, and a check
that uses it fails with that reason. What a student's kernel exports is only ever a claim: the
checks test it. A function is exported as its key only: the kernel keeps it (`FUNCTIONS`), and a
hidden test's call runs it there (graders.inside.proxy).
"""
import json
import math
import os
import stat
import sys
import types
from pathlib import Path

MANIFEST = "manifest.json"
PLAIN = (bool, int, float, str, type(None))
FUNCTIONS = {}  # in the kernel: {key: a function a test cell exported}, for the hidden test's calls


class Refused(Exception):
    """A value that cannot cross to the checker as data."""


# -- in the student's kernel ---------------------------------------------------------------

def export(namespace: dict, names: list, folder: str) -> None:
    """Save `names` from `namespace` into `folder`, with a manifest of what each became."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name in names:
        if name not in namespace:
            continue  # the check will say NameError, as it would in the kernel
        try:
            manifest[name] = _export_one(namespace[name], name, folder)
        except Exception as error:
            manifest[name] = {"kind": "refused", "why": f"{name} could not be checked: {_why(error)}"}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _export_one(value, name: str, folder: Path) -> dict:
    if isinstance(value, types.ModuleType):
        return {"kind": "module", "name": value.__name__}
    if isinstance(value, types.FunctionType):  # as it is now: a later cell may define another
        key = f"{folder}/{name}"
        FUNCTIONS[key] = value
        return {"kind": "function", "key": key}
    np = sys.modules.get("numpy")  # not imported: no value can be an array (or a keras object)
    if np is not None and isinstance(value, np.ndarray):
        np.save(folder / f"{name}.npy", np.asarray(value), allow_pickle=False)
        return {"kind": "array", "file": f"{name}.npy"}
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(value, keras.Model):
        value.save(folder / f"{name}.keras")
        return {"kind": "model", "file": f"{name}.keras"}
    if keras is not None and isinstance(value, keras.callbacks.History):
        history = plain(value.history)
        if not isinstance(history, dict):
            raise Refused("its .history is not a dict")
        return {"kind": "history", "history": history}
    return {"kind": "value", "value": plain(value)}


def plain(value):
    """`value` as a tagged JSON tree of exact builtin types. numpy's own scalars become numbers;
    a subclass of int, float or str becomes the plain value it holds (its `==`, `-` or `abs`
    may say anything); other subclasses are refused."""
    kind = type(value)
    for base, exact in ((int, int.__index__), (float, float.__float__), (str, str.__str__)):
        if kind is not base and kind is not bool and isinstance(value, base):
            return plain(exact(value))
    if kind in PLAIN:
        if kind is float and not math.isfinite(value):
            return {"float": repr(value)}
        return value
    if kind in (list, tuple):
        return {kind.__name__: [plain(item) for item in value]}
    if kind is dict:
        if not all(type(key) is str for key in value):
            raise Refused("a dict with keys that are not plain strings")
        return {"dict": {key: plain(item) for key, item in value.items()}}
    np = sys.modules.get("numpy")
    if np is not None and kind.__module__ == "numpy" and isinstance(value, (np.bool_, np.integer, np.floating)):
        return plain(value.item())
    raise Refused(f"it is a {kind.__module__}.{kind.__qualname__}, not a plain int, float, str, "
                  "list, dict, numpy array or keras model")


def _why(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return text if isinstance(error, Refused) else f"{type(error).__name__}: {text}"[:300]


# -- in the checker ------------------------------------------------------------------------

KINDS = ("value", "array", "model", "history", "module", "function", "refused")  # the closed list the checker loads


class ModuleName(str):
    """A module the kernel exported, as its name only: the checker imports nothing a student names.
    Equal to that name and to the module of that name (`solver == numpy` holds for `import numpy`)."""

    @property
    def __name__(self):
        return str(self)

    def __eq__(self, other):
        return other.__name__ == str(self) if isinstance(other, types.ModuleType) else str.__eq__(self, other)

    def __ne__(self, other):
        return not self == other

    __hash__ = str.__hash__

    def __repr__(self):
        return f"<module {str(self)!r} (its name only)>"


def load(folder: str, names: list, functions=None) -> tuple:
    """({name: value} as the checker's own objects, {name: why it was refused}), for `names` only
    (the names the check reads: graders.inside.hidden.Check.names). The manifest is the kernel's
    claim: an entry of another name is never looked at, a kind outside KINDS is refused, and a file
    is NAME.npy or NAME.keras, a plain file of `folder` itself (no path, no link), whatever the
    manifest says. A function becomes `functions(name, key)` (graders.inside.proxy.StudentFunction),
    and is refused without `functions` (a recheck: no kernel to run it)."""
    folder = Path(folder)
    manifest = json.loads(_read_plain(folder, MANIFEST))
    if not isinstance(manifest, dict):
        raise Refused("the manifest is not a dict")
    values, refused = {}, {}
    for name in names:
        if name not in manifest:
            continue  # the check will say NameError, as it would in the kernel
        entry = manifest[name]
        try:
            values[name] = _load_one(name, entry, folder, functions)
        except Exception as error:
            why = entry.get("why") if isinstance(entry, dict) and entry.get("kind") == "refused" else None
            refused[name] = plain_text(why if isinstance(why, str) else f"{name} could not be checked: {_why(error)}")
    return values, refused


def needs_keras(folder: str, names: list) -> bool:
    """Whether loading `names` from this export imports keras (a model or a history): the checker
    then imports it once for all its requests (graders.inside.hidden.serve)."""
    try:
        manifest = json.loads(_read_plain(Path(folder), MANIFEST))
    except (OSError, ValueError, Refused):
        return False
    return isinstance(manifest, dict) and any(
        isinstance(manifest.get(name), dict) and manifest[name].get("kind") in ("model", "history") for name in names)


def calls_student(folder: str, names: list) -> bool:
    """Whether the kernel says one of `names` is a function (so its kernel must be alive for the
    check, or a recheck cannot run it). A claim: a lie only keeps the kernel up, or fails the check."""
    try:
        manifest = json.loads(_read_plain(Path(folder), MANIFEST))
    except (OSError, ValueError, Refused):
        return False
    return isinstance(manifest, dict) and any(
        isinstance(manifest.get(name), dict) and manifest[name].get("kind") == "function" for name in names)


def _load_one(name: str, entry, folder: Path, functions=None):
    if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
        raise Refused("its export is not one of the kinds the checker loads")
    kind = entry["kind"]
    if kind == "refused":
        raise Refused("it was refused by the export")
    if kind == "function":
        if functions is None or not isinstance(entry.get("key"), str):
            raise Refused("it is a function, and this check runs without the student's kernel")
        return functions(name, entry["key"])
    if kind == "module":
        module = entry.get("name")
        if not isinstance(module, str) or len(module) > 200 or not all(part.isidentifier() for part in module.split(".")):
            raise Refused("malformed module name")
        return ModuleName(module)
    if kind == "array":
        import numpy as np
        array = np.load(_inside(folder, f"{name}.npy"), allow_pickle=False)
        if type(array) is not np.ndarray:
            raise Refused("its file is not one numpy array")
        return array
    if kind == "model":
        import keras
        return keras.saving.load_model(_inside(folder, f"{name}.keras"), compile=False, safe_mode=True)
    if kind == "history":
        import keras
        history = keras.callbacks.History()
        history.history = unplain(entry.get("history"))
        if type(history.history) is not dict:
            raise Refused("its history is not a dict")
        return history
    return unplain(entry.get("value"))


def plain_text(text: str, limit: int = 300) -> str:
    """`text` on one line, without control or format characters, at most `limit` characters: what the
    kernel wrote is shown as data, never as a terminal's or a page's instructions."""
    return "".join(char if char.isprintable() else " " for char in str(text)[:limit])


def unplain(tree):
    """The inverse of `plain`: tagged JSON back to Python values."""
    if type(tree) in PLAIN:
        return tree
    if type(tree) is dict and len(tree) == 1:
        (tag, item), = tree.items()
        if tag == "float" and item in ("nan", "inf", "-inf"):
            return float(item)
        if tag in ("list", "tuple") and type(item) is list:
            return {"list": list, "tuple": tuple}[tag](unplain(x) for x in item)
        if tag == "dict" and type(item) is dict:
            return {key: unplain(x) for key, x in item.items()}
    raise Refused("malformed value")


def _inside(folder: Path, name: str) -> str:
    """`folder`/`name` if it is a plain file there: `folder` reached through no link (the runner gave
    its real path), `name` a plain name (NAME.npy, from the check's own names), not a link itself."""
    path = os.path.join(folder, name)
    if os.path.realpath(folder) != str(folder) or os.sep in name or name in (".", ".."):
        raise Refused(f"{name} is not a file of the export")
    status = os.lstat(path)
    if not stat.S_ISREG(status.st_mode):
        raise Refused(f"{name} is not a plain file of the export")
    return path


def _read_plain(folder: Path, name: str) -> str:
    """The text of a plain file of the export (never through a link)."""
    descriptor = os.open(_inside(folder, name), os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, encoding="utf-8") as stream:
        return stream.read()


# -- kept for a recheck (graders.grading.recheck) -------------------------------------------

CHECKED = "checked.json"  # in a pack: the test cells (indices) the checker ran, as the runner knew them


def pack(folder, checked: list) -> bytes:
    """One notebook's exports as a .tar.xz in memory, so that a regrade after the hidden tests
    change can run the checks again without the student's code: the folders of the test cells
    `checked` (indices: those whose public part passed, as the runner queued them) and CHECKED,
    their list. Nothing else the kernel may have written there is kept: a folder the student made
    for a cell whose public part failed must not turn into a check. Identical files (the same
    preprocessed images read by two checks) are kept once, as hard links. xz at preset 0: MNIST's
    preprocessed images are mostly zeros, and it packs 47 MB of them into 4.4 MB in 0.7 CPU-seconds."""
    import hashlib
    import io
    import json
    import tarfile
    folder, seen, checked = Path(folder), {}, sorted({int(index) for index in checked})
    cells = {f"{index:03d}" for index in checked}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=0) as archive:
        listing = json.dumps(checked).encode()
        info = tarfile.TarInfo(CHECKED)
        info.mtime, info.mode, info.size = 0, 0o600, len(listing)
        archive.addfile(info, io.BytesIO(listing))
        for path in sorted(folder.rglob("*") if folder.is_dir() else []):
            if path.relative_to(folder).parts[0] not in cells:
                continue
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue  # the exports are plain files and folders; anything else is not data
            name = str(path.relative_to(folder))
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = 0, 0o700 if path.is_dir() else 0o600
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
                continue
            content = path.read_bytes()
            digest = hashlib.sha256(content).hexdigest()
            if digest in seen:
                info.type, info.linkname = tarfile.LNKTYPE, seen[digest]
                archive.addfile(info)
            else:
                seen[digest], info.size = name, len(content)
                archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def unpack(packed: bytes, folder) -> None:
    """The inverse of `pack`, as data only (graders.inside.untar: no links out, no devices, no
    absolute paths); what is inside is then only ever `load`ed."""
    import io
    import tarfile

    from graders.inside import untar
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:xz") as archive:
        untar.extract(archive, folder)

