"""Throw-away certificates for the tests' TLS servers, made with the
openssl command: a CA and a server certificate it signs (EC P-256, 30
days), for the names given.  No test depends on certificates shipped with
the interpreter's test package, so the suite's TLS tests run on an
interpreter without it (Debian's python3 without libpython3.X-testsuite).

make(directory, hostnames) writes ca.pem, server.pem and server.key there
and returns their paths; shared() is one such set for the whole test
process (made on first use, removed at exit).  make_ca() and
issue_certificate() are the steps, for more CAs and client certificates
(tests/dovecot_server.py)."""
import atexit
import os
import shutil
import subprocess
import tempfile
import threading

_lock = threading.Lock()
_shared = []


class Certificates:
    def __init__(self, directory):
        self.directory = directory
        self.ca_file = os.path.join(directory, "ca.pem")
        self.cert_file = os.path.join(directory, "server.pem")
        self.key_file = os.path.join(directory, "server.key")


SERVER_EXTENSIONS = ("basicConstraints = critical, CA:FALSE\n"
                     "keyUsage = critical, digitalSignature, "
                     "keyEncipherment\n"
                     "extendedKeyUsage = serverAuth\n"
                     "subjectAltName = %s\n"
                     "subjectKeyIdentifier = hash\n"
                     "authorityKeyIdentifier = keyid, issuer\n")
CLIENT_EXTENSIONS = ("basicConstraints = critical, CA:FALSE\n"
                     "keyUsage = critical, digitalSignature\n"
                     "extendedKeyUsage = clientAuth\n"
                     "subjectKeyIdentifier = hash\n"
                     "authorityKeyIdentifier = keyid, issuer\n")
_EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
           "-nodes"]


def find_openssl():
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed "
                           "(apt-get install openssl)")
    return openssl


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError("%s failed:\n%s"
                           % (" ".join(args), proc.stdout.decode()))


def _modes(directory):
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name),
                 0o600 if name.endswith(".key") else 0o644)


def subject_alt_names(hostnames):
    """DNS names only (never IP:127.0.0.1: verifying a connection to the
    address, not the name, must fail)."""
    return ", ".join("DNS:" + name for name in hostnames)


def make_ca(openssl, directory, name, common_name):
    """NAME.key and the self-signed NAME.pem of a CA, in `directory`."""
    with open(os.path.join(directory, name + ".ext"), "w") as f:
        f.write("basicConstraints = critical, CA:TRUE\n"
                "keyUsage = critical, keyCertSign, cRLSign\n"
                "subjectKeyIdentifier = hash\n")
    _run([openssl, "req", "-new", *_EC_KEY, "-keyout", name + ".key",
          "-out", name + ".csr", "-subj",
          "/O=cpoplib tests/CN=%s" % common_name], directory)
    _run([openssl, "x509", "-req", "-in", name + ".csr", "-signkey",
          name + ".key", "-out", name + ".pem", "-days", "30", "-extfile",
          name + ".ext"], directory)
    _modes(directory)


def issue_certificate(openssl, directory, name, common_name, extensions,
                      ca="ca"):
    """NAME.key (a new P-256 key) and NAME.pem, a certificate for
    /O=cpoplib tests/CN=common_name with `extensions`, signed by CA.pem
    and CA.key, in `directory` (files of that name are replaced)."""
    with open(os.path.join(directory, name + ".ext"), "w") as f:
        f.write(extensions)
    _run([openssl, "req", "-new", *_EC_KEY, "-keyout", name + ".key",
          "-out", name + ".csr", "-subj",
          "/O=cpoplib tests/CN=%s" % common_name], directory)
    _run([openssl, "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem",
          "-CAkey", ca + ".key", "-set_serial",
          str(int.from_bytes(os.urandom(8), "big")), "-out", name + ".pem",
          "-days", "30", "-extfile", name + ".ext"], directory)
    _modes(directory)


def make(directory, hostnames, openssl=None):
    """A CA and a server certificate for `hostnames` (the first is the
    subject's CN, all are DNS subjectAltNames) in `directory`."""
    openssl = openssl or find_openssl()
    make_ca(openssl, directory, "ca", "cpoplib test CA")
    issue_certificate(openssl, directory, "server", hostnames[0],
                      SERVER_EXTENSIONS % subject_alt_names(hostnames))
    return Certificates(directory)


def shared():
    """The test process's certificates for "localhost"."""
    with _lock:
        if not _shared:
            directory = tempfile.mkdtemp(prefix="cpoplib-pki-")
            atexit.register(shutil.rmtree, directory, True)
            _shared.append(make(directory, ["localhost"]))
        return _shared[0]
