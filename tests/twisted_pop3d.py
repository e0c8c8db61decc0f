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

import json
import os
import sys

from twisted.cred import checkers, credentials, portal
from twisted.internet import reactor
from twisted.internet.protocol import ServerFactory
from twisted.mail import maildir, pop3
from zope.interface import implementer


class BinaryMaildirMailbox(maildir.MaildirMailbox):
    """Twisted's Maildir mailbox, its messages opened in binary mode.

    MaildirMailbox.getMessage() opens the file in text mode, and POP3's
    transformChunk() then fails on the str chunks (bytes.replace with a
    str): every RETR and TOP would end in a dropped connection."""

    def getMessage(self, i):
        return open(self.list[i], "rb")


@implementer(portal.IRealm)
class MaildirRealm:
    def __init__(self, home):
        self.home = home

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if pop3.IMailbox not in interfaces:
            raise NotImplementedError("only IMailbox avatars")
        user = avatar_id.decode() if isinstance(avatar_id, bytes) \
            else avatar_id
        path = os.path.join(self.home, user, "Maildir").encode()
        return pop3.IMailbox, BinaryMaildirMailbox(path), lambda: None


def main(workdir):
    with open(os.path.join(workdir, "users.json")) as f:
        users = json.load(f)
    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(
        **{name: password.encode() for name, password in users.items()})
    the_portal = portal.Portal(MaildirRealm(os.path.join(workdir, "home")),
                               [checker])

    class POP3Factory(ServerFactory):
        protocol = pop3.POP3
        challengers = {b"CRAM-MD5": credentials.CramMD5Credentials}
        noisy = False

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
