"""Command-line options whose defaults come from environment variables, so
that `SOAK_SECONDS=20 scripts/soak` and `scripts/soak --seconds 20` are the
same run. A knob is (option, environment variable, default, help); its type
is its default's (int, float, bool or str). A bool knob's variable is on when
it is "1"; its option takes no value."""
import argparse
import os
import sys


def env_num(name, default, kind=float):
    """The environment variable `name` (or `default`) as a number; exits with
    a clear message when it is not one."""
    try:
        return kind(os.environ.get(name, default))
    except ValueError:
        sys.exit("error: %s=%r is not a number" % (name, os.environ.get(name)))


def _dest(option):
    return option.lstrip("-").replace("-", "_")


def _from_env(env, default):
    if isinstance(default, bool):
        return os.environ.get(env, "1" if default else "0") == "1"
    if isinstance(default, (int, float)):
        return env_num(env, str(default), type(default))
    return os.environ.get(env, default)


def _fmt(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    s = repr(v) if isinstance(v, float) else str(v)
    return s[:-2] if isinstance(v, float) and s.endswith(".0") else s


def parser(prog, doc, knobs, epilog=None):
    """An ArgumentParser (prog, doc as its description) with one option per
    knob; its help names the variable and the value in effect."""
    ap = argparse.ArgumentParser(prog=prog, description=doc, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_knobs(ap, knobs)
    return ap


def add_knobs(ap, knobs, title=None):
    """One option per knob (in an argument group when title is given); an
    option not given stays out of the parsed namespace (see values())."""
    group = ap.add_argument_group(title) if title else ap
    for option, env, default, text in knobs:
        now = _fmt(_from_env(env, default)) or '""'
        if isinstance(default, bool):
            group.add_argument(option, action="store_true", default=argparse.SUPPRESS,
                               help=("%s (%s=1; now %s)" % (text, env, now)).replace("%", "%%"))
        else:
            group.add_argument(option, type=type(default), default=argparse.SUPPRESS, metavar=env.split("_")[-1],
                               help=("%s (%s, now %s)" % (text, env, now)).replace("%", "%%"))


def values(knobs, ns=None):
    """The knobs' values: given in ns (parsed options; exported to the
    environment, so that modules and children reading the variables see
    them), else from the environment, else the defaults. Attributes named
    after the options (--kill-every: kill_every)."""
    out = argparse.Namespace()
    for option, env, default, _ in knobs:
        dest = _dest(option)
        if ns is not None and hasattr(ns, dest):
            os.environ[env] = _fmt(getattr(ns, dest))
        setattr(out, dest, _from_env(env, default))
    return out


def parse(prog, doc, knobs, argv=None, epilog=None):
    """Parses argv (default sys.argv[1:]) against the knobs: values()."""
    return values(knobs, parser(prog, doc, knobs, epilog).parse_args(argv))
