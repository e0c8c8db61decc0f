"""Build script for cpoplib's C extension.

Environment switches:
  CPOPLIB_WERROR=1    compile with -Werror (CI does)
  CPOPLIB_SANITIZE=1  build with AddressSanitizer and UBSan (CI does, in
                      a separate job; run under LD_PRELOAD of libasan);
                      internal invariants (a line used after the read
                      buffer moved) abort instead of raising
"""
import os
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCES = [              # bottom to top: see the table in cpoplib.h
    "Modules/pop3_parser.c",
    "Modules/sasl.c",
    "Modules/window.c",
    "Modules/errors.c",
    "Modules/args.c",
    "Modules/durability.c",
    "Modules/settings.c",
    "Modules/buffer.c",
    "Modules/reader.c",
    "Modules/connection.c",
    "Modules/wire.c",
    "Modules/protocol.c",
    "Modules/engine.c",
    "Modules/saslobj.c",
    "Modules/commands.c",
    "Modules/connect.c",
    "Modules/retrieval.c",
    "Modules/auth.c",
    "Modules/pipeline.c",
    "Modules/methods.c",
    "Modules/_cpoplib.c",
]


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


class BuildExt(build_ext):
    """Recompiles every time; fails early, naming the package to install,
    when the OpenSSL headers are missing."""

    def finalize_options(self):
        super().finalize_options()
        # Always recompile: objects left in build/ by a build with other
        # flags (a sanitizer build, say) must never be reused.
        self.force = True

    def build_extensions(self):
        probe = "#include <openssl/evp.h>\nint main(void) { return 0; }\n"
        tmp = os.path.join(self.build_temp, "openssl_probe.c")
        os.makedirs(self.build_temp, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(probe)
        try:
            self.compiler.compile([tmp], output_dir=self.build_temp)
        except Exception:
            sys.exit(
                "cpoplib: cannot compile against OpenSSL's <openssl/evp.h>.\n"
                "Install the OpenSSL development headers first, e.g. on "
                "Debian/Ubuntu:  apt-get install libssl-dev"
            )
        super().build_extensions()


cflags = ["-fvisibility=hidden",   # only PyInit__cpoplib is exported
          "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes",
          "-Wno-missing-field-initializers", "-Wno-unused-parameter"]
ldflags = []
if _flag("CPOPLIB_WERROR"):
    cflags.append("-Werror")
if _flag("CPOPLIB_SANITIZE"):
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-fno-omit-frame-pointer", "-O1", "-g", "-DCPOPLIB_CHECKED"]
    cflags += san
    ldflags += ["-fsanitize=address,undefined"]
if sysconfig.get_config_var("Py_DEBUG"):
    cflags.append("-O0")

setup(
    ext_modules=[
        Extension(
            "cpoplib._cpoplib",
            sources=SOURCES,
            depends=["Modules/cpoplib.h", "Modules/connection.h",
                     "Modules/pop3_parser.h", "Modules/sasl.h",
                     "Modules/window.h"],
            libraries=["crypto"],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
