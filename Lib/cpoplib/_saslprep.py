"""SASLprep (RFC 4013) for cpoplib's SCRAM client, from the stdlib's
stringprep tables (RFC 3454).

Strings are prepared as "queries" (RFC 5802 5.1): unassigned code points
are allowed.  The C core (Modules/auth.c) calls saslprep() only for
strings that are not plain printable ASCII, which SASLprep leaves as they
are.  Error messages never quote the prepared string: it may be a
password.
"""

import stringprep
import unicodedata

__all__ = ["saslprep"]

_PROHIBITED = (
    stringprep.in_table_c12,   # non-ASCII space characters
    stringprep.in_table_c21,   # ASCII control characters
    stringprep.in_table_c22,   # non-ASCII control characters
    stringprep.in_table_c3,    # private use
    stringprep.in_table_c4,    # non-character code points
    stringprep.in_table_c5,    # surrogate codes
    stringprep.in_table_c6,    # inappropriate for plain text
    stringprep.in_table_c7,    # inappropriate for canonical representation
    stringprep.in_table_c8,    # change display properties / deprecated
    stringprep.in_table_c9,    # tagging characters
)


def saslprep(text, what="string"):
    """The SASLprep form of text (a str); ValueError if RFC 4013 prohibits
    a character of it or its bidirectional text is malformed."""
    # 2.1 mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing"
    # characters removed
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch
        for ch in text if not stringprep.in_table_b1(ch))
    # 2.2 normalisation: NFKC
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    # 2.3 prohibited output
    for pos, ch in enumerate(prepared):
        for table in _PROHIBITED:
            if table(ch):
                raise ValueError(
                    "SASLprep: the %s contains a character RFC 4013 "
                    "prohibits (at position %d after preparation)"
                    % (what, pos))
    # 2.4 bidirectional characters (RFC 3454 6)
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if any(stringprep.in_table_d2(ch) for ch in prepared):
            raise ValueError("SASLprep: the %s mixes left-to-right and "
                             "right-to-left characters" % what)
        if not (stringprep.in_table_d1(prepared[0])
                and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("SASLprep: the %s has right-to-left text that "
                             "neither starts nor ends with a right-to-left "
                             "character" % what)
    return prepared
