"""On an interpreter without test.test_poplib (Debian's python3 without
libpython3.X-testsuite), tests/test_stdlib_suite.py skips with the install
hint, and fails when CI or CPOPLIB_REQUIRE_STDLIB_SUITE=1 requires it.

The interpreter here has the suite, so a child pytest hides it with a
meta-path finder that answers "no such module" for test.test_poplib
(with --assert=plain: pytest's assertion rewriter would otherwise find the
module first, its name matching test_*.py).
"""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import sys


class HideSuite:
    def find_spec(self, name, path=None, target=None):
        if name == "test.test_poplib":
            raise ModuleNotFoundError("No module named %r" % name, name=name)
        return None


sys.meta_path.insert(0, HideSuite())
import pytest
sys.exit(pytest.main(["-p", "no:cacheprovider", "--assert=plain", "-q",
                      "-rs",
                      sys.argv[1]]))
"""


def run_without_suite(**env_changes):
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "CPOPLIB_REQUIRE_STDLIB_SUITE")}
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-c", CHILD,
         os.path.join(HERE, "test_stdlib_suite.py")],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=300, text=True)


def test_missing_suite_skips_with_the_install_hint():
    proc = run_without_suite()
    assert proc.returncode == 5, proc.stdout        # 5: no test ran
    assert "1 skipped" in proc.stdout, proc.stdout
    assert "apt-get install libpython3.%d-testsuite" % sys.version_info[1] \
        in proc.stdout, proc.stdout


@pytest.mark.parametrize("env", [{"CI": "true"},
                                 {"CPOPLIB_REQUIRE_STDLIB_SUITE": "1"}],
                         ids=["CI", "CPOPLIB_REQUIRE_STDLIB_SUITE"])
def test_missing_suite_is_an_error_when_required(env):
    proc = run_without_suite(**env)
    assert proc.returncode == 2, proc.stdout        # a collection error
    assert "no test.test_poplib" in proc.stdout, proc.stdout
    assert "apt-get install libpython3.%d-testsuite" % sys.version_info[1] \
        in proc.stdout, proc.stdout
