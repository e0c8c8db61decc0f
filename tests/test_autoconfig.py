"""cpoplib.autoconfig and cpoplib.providers.

Autoconfiguration against a DNS server on 127.0.0.1 (tests/dns_server.py,
dnslib) with both resolvers: the built-in stub resolver (UDP, TCP after
a truncated answer) and dnspython's: known domains, RFC 6186 SRV records
(_pop3s before _pop3, "." for "not offered", priority and weight), MX
pointing at Google or Microsoft, NXDOMAIN, a server that does not
answer.  The profiles: the table's values, iCloud refused, Outlook
refusing passwords, Gmail's recent: mode and session-loop rule.
"""
import random
import socket

import pytest

from dns_server import LocalDNS

from cpoplib import autoconfig, providers


@pytest.fixture
def dns():
    with LocalDNS() as srv:
        yield srv


RESOLVERS = ["builtin", "dnspython"]


def resolver_for(kind, dns):
    if kind == "dnspython":
        pytest.importorskip("dns.resolver")
        return autoconfig.DnspythonResolver([dns.address], timeout=2)
    return autoconfig.StubResolver([dns.address], timeout=2)


@pytest.mark.parametrize("kind", RESOLVERS)
def test_srv_pop3s(dns, kind):
    dns.add("_pop3s._tcp.example.org", "SRV", (0, 1, 995, "mail.example.net"))
    dns.add("_pop3._tcp.example.org", "SRV", (0, 1, 110, "plain.example.net"))
    choice = autoconfig.discover("alice@example.org", resolver_for(kind, dns))
    assert (choice.host, choice.port, choice.tls, choice.user) == \
        ("mail.example.net", 995, "ssl", "alice@example.org")
    assert choice.profile is None
    assert choice.describe() == ("SRV record _pop3s._tcp.example.org: "
                                 "mail.example.net:995 (TLS), user "
                                 "alice@example.org")
    assert [q[:2] for q in dns.queries] == [("_pop3s._tcp.example.org",
                                             "SRV")]


@pytest.mark.parametrize("kind", RESOLVERS)
def test_srv_pop3_needs_starttls(dns, kind):
    dns.add("_pop3s._tcp.example.org", "SRV", (0, 0, 0, "."))   # not offered
    dns.add("_pop3._tcp.example.org", "SRV", (5, 0, 110, "pop.example.org"))
    choice = autoconfig.discover("bob@Example.ORG", resolver_for(kind, dns))
    assert (choice.host, choice.port, choice.tls) == \
        ("pop.example.org", 110, "starttls")
    assert "(STARTTLS)" in choice.describe()


@pytest.mark.parametrize("kind", RESOLVERS)
@pytest.mark.parametrize("mx,profile", [
    ("aspmx.l.google.com", "gmail"), ("smtp.google.com", "gmail"),
    ("example-org.mail.protection.outlook.com", "outlook")])
def test_mx_of_a_provider(dns, kind, mx, profile):
    dns.add("example.org", "MX", (20, "mx2.elsewhere.example"))
    dns.add("example.org", "MX", (10, mx))
    choice = autoconfig.discover("carol@example.org", resolver_for(kind, dns))
    p = providers.PROFILES[profile]
    assert choice.profile is p
    assert (choice.host, choice.port, choice.tls, choice.user) == \
        (p.host, p.port, "ssl", "carol@example.org")
    assert choice.how == "MX of example.org is %s" % mx
    # both SRV names were asked first
    assert [q[:2] for q in dns.queries] == [
        ("_pop3s._tcp.example.org", "SRV"), ("_pop3._tcp.example.org", "SRV"),
        ("example.org", "MX")]


@pytest.mark.parametrize("kind", RESOLVERS)
def test_nothing_found(dns, kind):
    dns.add("example.org", "MX", (10, "mx.example.org"))
    with pytest.raises(autoconfig.AutoconfigError) as info:
        autoconfig.discover("dave@example.org", resolver_for(kind, dns))
    text = str(info.value)
    assert "cannot find the POP3 server of example.org" in text
    assert "no SRV _pop3s._tcp.example.org" in text
    assert "points at neither Google nor Microsoft" in text
    assert "--host" in text
    # a domain the server has never heard of: NXDOMAIN everywhere
    with pytest.raises(autoconfig.AutoconfigError, match="MX none"):
        autoconfig.discover("x@nowhere.example", resolver_for(kind, dns))


def test_truncated_answer_goes_to_tcp():
    with LocalDNS(udp_limit=512) as dns:
        for i in range(30):
            dns.add("_pop3s._tcp.big.example", "SRV",
                    (10, 1, 995, "pop%02d.a-rather-long-name.example" % i))
        dns.add("_pop3s._tcp.big.example", "SRV",
                (1, 1, 1995, "first.big.example"))
        choice = autoconfig.discover(
            "e@big.example", autoconfig.StubResolver([dns.address]))
        assert (choice.host, choice.port) == ("first.big.example", 1995)
        assert [q[2] for q in dns.queries] == ["udp", "tcp"]


def test_server_that_does_not_answer():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        r = autoconfig.StubResolver([silent.getsockname()], timeout=0.2,
                                    attempts=2)
        with pytest.raises(autoconfig.DNSError, match="failed"):
            r.srv("_pop3s._tcp.example.org")


def test_known_domains_need_no_dns():
    class NoDNS:
        name = "none"

        def srv(self, name):
            raise AssertionError("asked DNS")

        mx = srv

    c = autoconfig.discover("Someone@gmail.com", NoDNS())
    assert (c.host, c.port, c.tls, c.profile.name) == \
        ("pop.gmail.com", 995, "ssl", "gmail")
    c = autoconfig.discover("me@web.de", NoDNS())
    assert (c.host, c.user) == ("pop3.web.de", "me")        # the local part
    c = autoconfig.discover("me@hotmail.com", NoDNS())
    assert c.profile.name == "outlook" and c.user == "me@hotmail.com"
    with pytest.raises(autoconfig.AutoconfigError, match="no POP3 service"):
        autoconfig.discover("me@icloud.com", NoDNS())
    for bad in ("no-at-sign", "@example.org", "x@localhost"):
        with pytest.raises(autoconfig.AutoconfigError, match="not an e-mail"):
            autoconfig.discover(bad, NoDNS())


def test_environment_names_the_server(dns, monkeypatch):
    dns.add("_pop3s._tcp.example.org", "SRV", (0, 1, 995, "env.example"))
    monkeypatch.setenv("CPOPLIB_DNS_SERVER", dns.spec)
    assert autoconfig.StubResolver().nameservers == [dns.address]
    for kind in ("builtin", "dnspython"):
        if kind == "dnspython":
            pytest.importorskip("dns.resolver")
        r = autoconfig.default_resolver(kind)
        assert autoconfig.discover("a@example.org", r).host == "env.example"


def test_parse_server_and_resolv_conf(tmp_path):
    assert autoconfig.parse_server("10.0.0.1") == ("10.0.0.1", 53)
    assert autoconfig.parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert autoconfig.parse_server("[::1]:5353") == ("::1", 5353)
    assert autoconfig.parse_server("::1") == ("::1", 53)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# c\nsearch x\nnameserver 192.0.2.1\n"
                    "nameserver fe80::1%eth0\n")
    assert autoconfig.system_nameservers(str(conf)) == [
        ("192.0.2.1", 53), ("fe80::1", 53)]


def test_srv_order_follows_rfc_2782():
    S = autoconfig.SRV
    records = [S(10, 0, 1, "c"), S(5, 1, 1, "b1"), S(5, 99, 1, "b2"),
               S(1, 0, 1, "a")]
    counts = {"b1": 0, "b2": 0}
    rng = random.Random(7)
    for _ in range(500):
        order = [r.target for r in autoconfig.order_srv(records, rng)]
        assert order[0] == "a" and order[-1] == "c"
        counts[order[1]] += 1
    assert counts["b2"] > 400 and counts["b1"] > 0     # weighted, not fixed


def test_parse_answer_rejects_mismatches():
    q = autoconfig.build_query("a.example", autoconfig.TYPE_SRV, 77)
    reply = bytearray(q)
    reply[2] |= 0x80                                    # QR
    assert autoconfig.parse_answer(bytes(reply), "a.example",
                                   autoconfig.TYPE_SRV, 77) == []
    with pytest.raises(autoconfig.DNSError, match="does not match"):
        autoconfig.parse_answer(bytes(reply), "a.example",
                                autoconfig.TYPE_SRV, 78)
    with pytest.raises(autoconfig.DNSError, match="another question"):
        autoconfig.parse_answer(bytes(reply), "b.example",
                                autoconfig.TYPE_SRV, 77)
    reply[3] |= 2                                       # SERVFAIL
    with pytest.raises(autoconfig.DNSError, match="rcode 2"):
        autoconfig.parse_answer(bytes(reply), "a.example",
                                autoconfig.TYPE_SRV, 77)
    loop = bytes(q[:12]) + b"\xc0\x0c"                  # points at itself
    loop = loop[:2] + b"\x81\x00" + loop[4:]
    with pytest.raises(autoconfig.DNSError, match="loop"):
        autoconfig.parse_answer(loop, "a.example", autoconfig.TYPE_SRV, 77)


# --------------------------------------------------------------------------
# the profiles

def test_profile_table():
    expect = {
        "gmail": ("pop.gmail.com", 995, "ssl", "oauth-or-password"),
        "outlook": ("outlook.office365.com", 995, "ssl", "oauth"),
        "yahoo": ("pop.mail.yahoo.com", 995, "ssl", "password"),
        "gmx": ("pop.gmx.net", 995, "ssl", "password"),
        "webde": ("pop3.web.de", 995, "ssl", "password"),
        "fastmail": ("pop.fastmail.com", 995, "ssl", "password"),
    }
    assert providers.names() == sorted(expect)
    for name, (host, port, tls, auth) in expect.items():
        p = providers.get(name)
        assert (p.host, p.port, p.tls, p.auth) == (host, port, tls, auth)
        assert p.sources and all(s.startswith("https://") for s in p.sources)
        assert p.domains
    assert providers.get("GMAIL") is providers.PROFILES["gmail"]
    assert providers.PROFILES["gmail"].oauth_provider == "google"
    assert providers.PROFILES["outlook"].oauth_provider == "microsoft"


def test_icloud_and_unknown_are_refused():
    with pytest.raises(providers.ProviderError,
                       match="iCloud Mail cannot be used: iCloud Mail has no "
                             "POP3 service"):
        providers.get("icloud")
    with pytest.raises(providers.ProviderError, match="unknown provider"):
        providers.get("aol")
    assert providers.for_domain("me.com").refused


def test_outlook_refuses_passwords():
    outlook = providers.get("outlook")
    with pytest.raises(providers.ProviderError,
                       match="accepts only OAuth 2.0"):
        providers.check_credentials(outlook, True, False)
    assert providers.check_credentials(outlook, False, False) == "oauth"
    yahoo = providers.get("yahoo")
    assert providers.check_credentials(yahoo, True, False) == "password"
    with pytest.raises(providers.ProviderError, match="app password"):
        providers.check_credentials(yahoo, False, True)
    gmail = providers.get("gmail")
    assert providers.check_credentials(gmail, False, True) == "oauth"
    assert providers.check_credentials(gmail, True, False) == "password"


def test_app_password_hints():
    for name in ("yahoo", "fastmail"):
        hint = providers.login_failure_hint(providers.get(name), False)
        assert "app password" in hint
    assert providers.login_failure_hint(providers.get("yahoo"), True) is None
    assert providers.login_failure_hint(None, False) is None


def test_gmail_recent_mode_and_session_rule():
    gmail = providers.get("gmail")
    assert providers.login_name(gmail, "a@gmail.com", recent=True) == \
        "recent:a@gmail.com"
    assert providers.login_name(gmail, "recent:a@gmail.com", True) == \
        "recent:a@gmail.com"
    assert providers.login_name(gmail, "a@gmail.com") == "a@gmail.com"
    with pytest.raises(providers.ProviderError, match="Gmail's"):
        providers.login_name(providers.get("gmx"), "a", recent=True)
    assert providers.another_session(gmail, 1, 5)
    assert not providers.another_session(gmail, 1, 0)
    assert not providers.another_session(gmail, 3, 5, max_sessions=3)
    assert not providers.another_session(providers.get("gmx"), 1, 5)
    assert gmail.always_quit
