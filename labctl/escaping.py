"""Escaping by where a value lands: every ``{{ … }}`` of a template passes one of these.

lab.yaml is untrusted input (docs/untrusted-input.md). Each template kind's Jinja environment has
a ``finalize`` that escapes every text value for its destination, so the safe form is the default
and a new template cannot forget it:

- Vagrantfile (Ruby): a double-quoted Ruby literal with ``\\``, ``"`` and ``#`` escaped (``#{`` can
  never interpolate) and every character outside printable ASCII written as an escape, so the
  literal is always one line. In comments, the ``comment`` filter keeps the value on its line.
- Playbook scripts (bash): one shell word (``shlex.quote``; plain words stay as they are).
- Manifests (YAML): a plain scalar when it reads back as exactly that string, else a YAML
  double-quoted scalar with every special character escaped.

Numbers and addresses (int, IPv4Address, IPv4Network) cannot carry syntax and pass unchanged; text
a template builds itself (a helper's multi-line output, a macro) is marked with ``Markup`` (the
``safe`` filter) to pass as it is. Markup never holds a raw lab.yaml value:
tests/test_escaping.py renders every template with a hostile value in every string field.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import shlex
from typing import Any

from markupsafe import Markup

_PASS = (int, float, ipaddress.IPv4Address, ipaddress.IPv4Network)


def _passes(value: Any) -> bool:
    return isinstance(value, Markup) or (isinstance(value, _PASS) and not isinstance(value, bool))


# ---- Ruby -------------------------------------------------------------------------------------------
_RUBY_NAMED = {"\\": "\\\\", '"': '\\"', "#": "\\#", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}


def ruby_literal(text: str) -> str:
    """A Ruby double-quoted string literal for ``text``: no interpolation, one line, ASCII only."""
    out = []
    for ch in text:
        if ch in _RUBY_NAMED:
            out.append(_RUBY_NAMED[ch])
        elif " " <= ch <= "~":
            out.append(ch)
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # a lone surrogate is no character Ruby can hold
            out.append("\\uFFFD")
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return '"' + "".join(out) + '"'


def ruby_finalize(value: Any) -> Any:
    if value is None or _passes(value):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(ruby_finalize(v)) for v in value) + "]"
    return ruby_literal(str(value))


def comment(value: Any, width: int = 0) -> Markup:
    """Text for a comment line (Ruby or shell): anything but printable ASCII becomes an escape, so
    a newline in a value cannot end the comment and start code."""
    text = str(value).encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in text)
    return Markup(text.ljust(width))


# ---- shell ------------------------------------------------------------------------------------------
def shell_finalize(value: Any) -> Any:
    if value is None or _passes(value) or isinstance(value, bool):
        return value
    return shlex.quote(str(value))


def shell_words(values: Any) -> Markup:
    """A list as several shell words, each quoted on its own (``for m in {{ models | words }}``)."""
    return Markup(" ".join(shlex.quote(str(v)) for v in values))


# ---- YAML -------------------------------------------------------------------------------------------
_YAML_PLAIN = re.compile(r"[A-Za-z0-9/_][A-Za-z0-9._/:@+=-]*")


@functools.lru_cache(maxsize=4096)
def _reads_back(text: str) -> bool:
    import yaml

    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def yaml_double_quoted(text: str) -> str:
    """A YAML double-quoted scalar for ``text`` (valid YAML 1.1 and 1.2, and JSON-compatible)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif 0x20 <= code <= 0x7E:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def yaml_finalize(value: Any) -> Any:
    if value is None or _passes(value) or isinstance(value, bool):
        return value
    text = str(value)
    if _YAML_PLAIN.fullmatch(text) and _reads_back(text):
        return text
    return yaml_double_quoted(text)
