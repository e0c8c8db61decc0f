"""The levels of ``cpoplib fetch``'s settings: a config file's
``[defaults]`` and ``[accounts.NAME]`` tables checked against the table
of settings.py (config_accounts(), config_table()), the exclusive groups
(check_exclusive()), and merge(), which lays the levels -- [defaults],
the account's table, the command line -- over the built-in defaults
(see settings.py for the precedence rule); origin() says which level
gave a setting."""
from .errors import EXIT_USAGE, FetchError
from .settings import BY_NAME, EXCLUSIVE, SETTINGS, describe, did_you_mean


def origin(levels, name):
    """The index in `levels` (lowest first, as merge() takes them) of the
    last level that gives `name`; -1 if none does (the built-in
    default)."""
    found = -1
    for i, level in enumerate(levels):
        if name in level:
            found = i
    return found


def is_on(name, value):
    """Whether a value given for a member of an exclusive group takes
    the group: true, or a value other than none."""
    return value is True if BY_NAME[name].kind == "bool" \
        else value is not None


def check_exclusive(values, prefix, label=str):
    """Two members of a group given on one level: a usage error."""
    for members in EXCLUSIVE.values():
        on = [label(m) for m in members if is_on(m, values.get(m))]
        if len(on) > 1:
            raise FetchError(EXIT_USAGE, "%s%s and %s exclude each other"
                             % (prefix, ", ".join(on[:-1]), on[-1]))


def merge(levels):
    """The effective settings: `levels` lowest first ([defaults], the
    account's table, the command line), each {name: value}, on top of the
    built-in defaults.  A level that takes an exclusive group clears the
    group's members of the levels below."""
    result = {s.name: s.default for s in SETTINGS}
    for level in levels:
        for members in EXCLUSIVE.values():
            if any(is_on(m, level.get(m)) for m in members):
                for m in members:
                    result[m] = BY_NAME[m].default
        result.update(level)
    return result


def config_table(table, path, where, run_scope):
    """An account's or the [defaults] table of a config file, checked:
    {name: value}.  `where` names it ("[defaults]", "[accounts.x]")."""
    prefix = "%s: %s:" % (path, where)
    if not isinstance(table, dict):
        raise FetchError(EXIT_USAGE, "%s must be a table, not %s" % (
            prefix, describe(table)))
    values = {}
    negatives = {s.toml_negative: s for s in SETTINGS if s.toml_negative}
    known = sorted(set(BY_NAME) | set(negatives))
    for key, value in table.items():
        if key == "password":
            raise FetchError(EXIT_USAGE, "%s no plain passwords in a file; "
                             "use password_env, password_command, "
                             "password_keyring or ~/.netrc" % prefix)
        setting = BY_NAME.get(key) or negatives.get(key)
        if setting is None:
            raise FetchError(EXIT_USAGE, "%s unknown setting %s%s" % (
                prefix, key, did_you_mean(key, known)))
        if setting.scope == "cli":
            raise FetchError(EXIT_USAGE, "%s %s is for the command line "
                             "only (%s)" % (prefix, key, setting.flags[0]))
        if setting.scope == "run" and not run_scope:
            raise FetchError(EXIT_USAGE, "%s %s applies to the whole run: "
                             "set it in [defaults] or on the command line"
                             % (prefix, key))
        value = setting.check(value, "%s %s" % (prefix, key))
        if key == setting.toml_negative:
            value = not value
        if setting.name in values and values[setting.name] != value:
            raise FetchError(EXIT_USAGE, "%s %s and %s contradict each "
                             "other" % (prefix, setting.name,
                                        setting.toml_negative))
        values[setting.name] = value
    check_exclusive(values, prefix + " ")
    return values


def config_accounts(data, path):
    """([defaults] values, {account name: values}) of a parsed config."""
    for key, value in data.items():
        if key not in ("defaults", "accounts"):
            hint = did_you_mean(key, ("defaults", "accounts"))
            if not isinstance(value, dict):
                raise FetchError(EXIT_USAGE, "%s: unknown key %s outside "
                                 "the tables (settings go in [defaults] or "
                                 "[accounts.NAME])" % (path, key))
            raise FetchError(EXIT_USAGE, "%s: unknown table [%s]%s" % (
                path, key, hint.replace("mean ", "mean [").replace(
                    "?", "]?")))
    defaults = config_table(data.get("defaults", {}), path, "[defaults]",
                            run_scope=True)
    tables = data.get("accounts")
    if tables is None:
        raise FetchError(EXIT_USAGE, "%s: no [accounts.NAME] table" % path)
    if not isinstance(tables, dict) or not tables:
        raise FetchError(EXIT_USAGE, "%s: [accounts] must hold tables "
                         "[accounts.NAME], one per account" % path)
    accounts = {}
    for name, table in tables.items():
        accounts[name] = config_table(table, path, "[accounts.%s]" % name,
                                      run_scope=False)
    return defaults, accounts
