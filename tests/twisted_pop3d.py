"""A POP3 server made of Twisted's twisted.mail.pop3, for
tests/other_servers.py (which starts it as a subprocess).

    python twisted_pop3d.py WORKDIR

WORKDIR/users.json maps user names to passwords; the mail of USER is the
Maildir WORKDIR/home/USER/Maildir.  The server listens on 127.0.0.1 on a
free port and prints that port number on stdout once it listens.  It
offers what twisted.mail.pop3.POP3 implements: USER/PASS, APOP (the
greeting carries a timestamp), AUTH CRAM-MD5 (its only SASL mechanism
here: POP3's AUTH state reads "user digest" responses, which fits
CRAM-MD5 alone), CAPA, UIDL, TOP; no STLS.  It stops on SIGTERM or when
the test process dies (it starts the server with PR_SET_PDEATHSIG).
"""

import hashlib
import json
import os
import sys

import twisted
from twisted.cred import checkers, credentials, portal
from twisted.internet import reactor
from twisted.internet.protocol import ServerFactory
from twisted.mail import pop3
from zope.interface import implementer


class MaildirMailbox(pop3.Mailbox):
    """The messages of a Maildir (new/ and cur/), numbered in the order
    of their file names, as twisted.mail.maildir.MaildirMailbox numbers
    them.  That class itself cannot serve on Python 3: its getMessage()
    opens files in text mode (POP3's transformChunk() then fails on str
    chunks) and its deleteMessage() joins a bytes path with str names.
    Like it, LIST reports the files' sizes (LF line ends) and the UIDL is
    the MD5 of the file name; unlike it, deletions happen at QUIT (sync),
    as RFC 1939 says, not at DELE."""

    def __init__(self, path):
        self.files = sorted(
            (name, os.path.join(path, sub, name))
            for sub in ("cur", "new")
            for name in os.listdir(os.path.join(path, sub)))
        self.deleted = set()

    def listMessages(self, i=None):
        if i is None:
            return [self.listMessages(n) for n in range(len(self.files))]
        if i in self.deleted:
            return 0
        return os.path.getsize(self.files[i][1])     # IndexError if none

    def getMessage(self, i):
        return open(self.files[i][1], "rb")

    def getUidl(self, i):
        return hashlib.md5(self.files[i][0].encode()).hexdigest().encode()

    def deleteMessage(self, i):
        self.files[i]                                   # IndexError if none
        self.deleted.add(i)

    def undeleteMessages(self):
        self.deleted.clear()

    def sync(self):
        for i in sorted(self.deleted):
            os.unlink(self.files[i][1])
        self.deleted.clear()


@implementer(portal.IRealm)
class MaildirRealm:
    def __init__(self, home):
        self.home = home

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if pop3.IMailbox not in interfaces:
            raise NotImplementedError("only IMailbox avatars")
        user = avatar_id.decode() if isinstance(avatar_id, bytes) \
            else avatar_id
        path = os.path.join(self.home, user, "Maildir")
        return pop3.IMailbox, MaildirMailbox(path), lambda: None


def main(workdir):
    with open(os.path.join(workdir, "users.json")) as f:
        users = json.load(f)
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse()
    for name, password in users.items():
        # USER/PASS and APOP look the name up as str, AUTH as bytes
        checker.addUser(name, password.encode())
        checker.addUser(name.encode(), password.encode())
    the_portal = portal.Portal(MaildirRealm(os.path.join(workdir, "home")),
                               [checker])

    @implementer(pop3.IServerFactory)
    class POP3Factory(ServerFactory):
        """Declares IServerFactory: only then does POP3's CAPA list SASL
        (and IMPLEMENTATION)."""
        protocol = pop3.POP3
        challengers = {b"CRAM-MD5": credentials.CramMD5Credentials}
        noisy = False

        def cap_IMPLEMENTATION(self):
            return "Twisted " + twisted.__version__

        def cap_EXPIRE(self):
            raise NotImplementedError       # not listed

        def cap_LOGIN_DELAY(self):
            raise NotImplementedError

        def perUserExpiration(self):
            return False

        def perUserLoginDelay(self):
            return False

        def buildProtocol(self, addr):
            proto = ServerFactory.buildProtocol(self, addr)
            proto.portal = the_portal
            proto.factory = self
            return proto

    port = reactor.listenTCP(0, POP3Factory(), interface="127.0.0.1")
    sys.stdout.write("%d\n" % port.getHost().port)
    sys.stdout.flush()
    reactor.run()          # SIGTERM stops it


if __name__ == "__main__":
    main(sys.argv[1])
