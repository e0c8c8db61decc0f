"""The settings of ``cpoplib fetch`` as text for people, made from the
table of settings.py: ``--help``'s epilog of exit codes, and the manual's
reference of every setting and exit code (docs/fetcher/reference.rst,
between the REF_BEGIN and REF_END lines; docs/man/cpoplib-fetch.rst
includes it in the man page).

``python -m cpoplib.fetch.reference --write docs/fetcher/reference.rst``
rewrites it there; without arguments it prints it.
"""
from .errors import EXIT_CODES, EXIT_RULE
from .settings import BY_NAME, EXCLUSIVE, GROUPS, KIND_TEXT, SETTINGS


def exit_code_lines():
    """--help's epilog: the exit codes."""
    import textwrap
    lines = ["exit codes:"]
    for code, text in EXIT_CODES:
        lines += textwrap.wrap(text, 76, initial_indent="  %-4d " % code,
                               subsequent_indent=" " * 7)
    lines += textwrap.wrap(EXIT_RULE, 76)
    return "\n".join(lines)


def _rst_table(header, rows):
    widths = [max(len(r[i]) for r in [header] + rows)
              for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [rule, head.rstrip(), rule]
    for row in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths))
                   .rstrip())
    out.append(rule)
    return out


def _rst_help(text):
    """A help text as reStructuredText: `cmd` and --option as literals."""
    import re
    text = re.sub(r"`([^`]+)`", r"``\1``", text)
    return re.sub(r"(?<![\w`-])(--[a-z][a-z0-9-]*)", r"``\1``", text)


def reference_rst():
    """The manual's reference of the settings and the exit codes."""
    import textwrap
    out = [REF_BEGIN, "",
           "Every setting, as an option and as a key of the config file",
           "(``--help`` says the same).  A size is a number of bytes, or a",
           "number followed by ``k``, ``M`` or ``G`` (KiB, MiB, GiB: powers",
           "of 1024); in the file an integer or a string (``skip_larger =",
           "\"10M\"``).", ""]
    for group in GROUPS:
        out += ["*%s*" % (group[0].upper() + group[1:]), ""]
        for s in (s for s in SETTINGS if s.group == group):
            flags = ", ".join("``%s%s``" % (f, "" if s.kind == "bool" or
                                            i else " " + s.metavar)
                              for i, f in enumerate(s.flags))
            key = "``%s``" % s.name
            if s.toml_negative:
                key += " (or ``%s``, its negation)" % s.toml_negative
            if s.scope == "run":
                key += " (in ``[defaults]`` only)"
            allowed = KIND_TEXT[s.kind]
            if s.range_words():
                allowed += ", " + s.range_words()
            help_text = _rst_help(s.help[0].upper() + s.help[1:])
            text = "%s = %s (default: %s).  %s." % (
                key, allowed, _rst_help(s.default_words()), help_text)
            if s.scope == "cli":
                text = "Command line only: %s (default: %s).  %s." % (
                    allowed, _rst_help(s.default_words()), help_text)
            if s.exclusive:
                others = ["``%s``" % BY_NAME[m].flags[0]
                          for m in dict.fromkeys(
                              m for g in s.groups() for m in EXCLUSIVE[g])
                          if m != s.name]
                text += "  Excludes %s on the same level." % " and ".join(
                    filter(None, [", ".join(others[:-1]), others[-1]]))
            out.append(flags)
            out += textwrap.wrap(text, 72, initial_indent="    ",
                                 subsequent_indent="    ",
                                 break_on_hyphens=False)
        out.append("")
    out += textwrap.wrap("Exit codes.  %s" % EXIT_RULE, 76) + [""]
    rows = []
    for code, text in EXIT_CODES:
        for i, line in enumerate(textwrap.wrap(text, 64)):
            rows.append([str(code) if i == 0 else "", line])
    out += _rst_table(["code", "meaning"], rows)
    out += ["", REF_END]
    return "\n".join(out) + "\n"


REF_BEGIN = ".. fetch-reference: made by python -m cpoplib.fetch.reference"
REF_END = ".. end of the fetch reference"


def with_reference(text):
    start = text.index(REF_BEGIN)
    end = text.index(REF_END, start) + len(REF_END) + 1
    return text[:start] + reference_rst() + text[end:]


def _main(argv):
    import sys
    if argv[:1] == ["--write"] and len(argv) == 2:
        with open(argv[1], encoding="utf-8") as f:
            text = f.read()
        new = with_reference(text)
        if new != text:
            with open(argv[1], "w", encoding="utf-8") as f:
                f.write(new)
        return 0
    sys.stdout.write(reference_rst())
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv[1:]))
