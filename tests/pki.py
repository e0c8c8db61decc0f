"""Throw-away certificates for the tests' TLS servers, made with the
openssl command: a CA and a server certificate it signs (EC P-256, 30
days), for the names given.  No test depends on certificates shipped with
the interpreter's test package, so the suite's TLS tests run on an
interpreter without it (Debian's python3 without libpython3.X-testsuite).

make(directory, hostnames) writes ca.pem, server.pem and server.key there
and returns their paths; shared() is one such set for the whole test
process (made on first use, removed at exit)."""
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


def _openssl(args, cwd):
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed "
                           "(apt-get install openssl)")
    proc = subprocess.run([openssl, *args], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError("openssl %s failed:\n%s"
                           % (" ".join(args), proc.stdout.decode()))


def make(directory, hostnames):
    """A CA and a server certificate for `hostnames` (the first is the
    subject's CN, all are DNS subjectAltNames) in `directory`."""
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = %s\n"
                "subjectKeyIdentifier = hash\n"
                "authorityKeyIdentifier = keyid, issuer\n"
                % ", ".join("DNS:%s" % name for name in hostnames))
    with open(os.path.join(directory, "ca.ext"), "w") as f:
        f.write("basicConstraints = critical, CA:TRUE\n"
                "keyUsage = critical, keyCertSign, cRLSign\n"
                "subjectKeyIdentifier = hash\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    _openssl(["req", "-new", *ec, "-keyout", "ca.key", "-out", "ca.csr",
              "-subj", "/O=cpoplib tests/CN=cpoplib test CA"], directory)
    _openssl(["x509", "-req", "-in", "ca.csr", "-signkey", "ca.key",
              "-out", "ca.pem", "-days", "30", "-extfile", "ca.ext"],
             directory)
    _openssl(["req", "-new", *ec, "-keyout", "server.key", "-out",
              "server.csr", "-subj", "/O=cpoplib tests/CN=%s" % hostnames[0]],
             directory)
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
              "ca.key", "-set_serial", str(int.from_bytes(os.urandom(8),
                                                          "big")),
              "-out", "server.pem", "-days", "30", "-extfile", "server.ext"],
             directory)
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name),
                 0o600 if name.endswith(".key") else 0o644)
    return Certificates(directory)


def shared():
    """The test process's certificates for "localhost"."""
    with _lock:
        if not _shared:
            directory = tempfile.mkdtemp(prefix="cpoplib-pki-")
            atexit.register(shutil.rmtree, directory, True)
            _shared.append(make(directory, ["localhost"]))
        return _shared[0]
