"""Text that came from a submission or a sandbox, made plain before anyone reads it.

A grade id, a student's folder name, an exception message, a kernel's output: student code
chose every character, and a terminal obeys escape sequences (a fake summary row drawn over the
real one, a cleared screen, a changed window title), a bidi override reorders what a TA reads.
`plain` is the one function that every such string goes through before a terminal, a log line,
the journal or a page: what it returns is one line of printable characters. A character it
cannot show is written as its escape (ESC as the four characters `\\x1b`), not dropped: a folder
named "refer\\u200bence" must not read as "reference".
"""
import unicodedata

_SPACES = set("\t\n\r\v\f\x85\u2028\u2029")
# control (Cc: C0, DEL, C1), format (Cf: bidi overrides and isolates, zero-width characters),
# surrogates (Cs), private use (Co), unassigned (Cn), line and paragraph separators (Zl, Zp)
_SHOWN_ESCAPED = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def plain(text, limit: int = 300, lines: bool = False) -> str:
    """`text` (anything: it is made a str) as one line of printable characters, at most `limit`
    long (0: no limit): line breaks and tabs made spaces, every other control, format or
    unassigned character written as its escape. With `lines` (a page: HTML), newlines and tabs
    stay, and nothing is cut or stripped."""
    shown = []
    for char in str(text):
        if lines and char in "\n\t":
            shown.append(char)
        elif char in _SPACES:
            shown.append(" ")
        elif unicodedata.category(char) in _SHOWN_ESCAPED:
            shown.append(char.encode("unicode_escape").decode("ascii"))
        else:
            shown.append(char)
    if lines:
        return "".join(shown)
    line = "".join(shown).strip()
    return line[:limit] if limit else line


def plain_data(value, limit: int = 300):
    """`value` (JSON data: dicts, lists, strings, numbers) with every string, keys included, made plain."""
    if isinstance(value, str):
        return plain(value, limit)
    if isinstance(value, dict):
        return {plain(key, limit): plain_data(item, limit) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(item, limit) for item in value]
    return value
