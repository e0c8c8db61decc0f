"""What the fetcher reads from a message's header: the envelope sender
(Return-Path, for the filter's ``%F``).
"""
import re


def header_block(data):
    """The header of a message (bytes, CRLF or LF line ends): everything
    before the first empty line."""
    m = re.search(rb"\r?\n\r?\n", data)
    if m is None:
        return data
    return data[:m.start() + 1]


def fields(data, name):
    """The values of header field `name` (case-insensitive), unfolded, as
    str (latin-1: every byte kept)."""
    wanted = name.lower().encode("ascii") + b":"
    values = []
    current = None
    for line in header_block(data).splitlines():
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        current = None
        if line.lower().startswith(wanted):
            current = [line[len(wanted):]]
            values.append(current)
    return [b"".join(v).decode("latin-1").strip() for v in values]


def envelope_sender(data):
    """The envelope sender the message's (first) Return-Path: names: the
    address inside its angle brackets; "" for the null sender ``<>``;
    None when there is no Return-Path."""
    found = fields(data, "Return-Path")
    if not found:
        return None
    value = found[0]
    m = re.search(r"<([^>]*)>", value)
    if m is not None:
        return m.group(1).strip()
    words = value.split()
    return words[0] if words else ""

