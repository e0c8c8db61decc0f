"""SCRAM's server side (RFC 5802, RFC 7677) for cpoplib's tests, written
independently of Modules/sasl.c with hashlib and hmac: a handler for
tests/scripted_server.py that checks the client's proof and answers with
the server signature."""
import base64
import hashlib
import hmac

GREETING = b"+OK ready\r\n"


def b64(data):
    return base64.b64encode(data)


def scram_server(user, password, hash_name="sha256", iterations=4096,
                 salt=b"0123456789abcdef", tamper_signature=False,
                 ok_early=False, greeting=GREETING):
    """A handler for ScriptedServer that plays SCRAM's server side."""
    h = getattr(hashlib, hash_name)
    mech = b"SCRAM-SHA-256" if hash_name == "sha256" else b"SCRAM-SHA-1"

    def handler(conn):
        conn.send(greeting)
        line = conn.recv_line().rstrip(b"\r\n")
        verb, got_mech, ir = line.split(b" ")
        assert verb == b"AUTH" and got_mech == mech
        client_first = base64.b64decode(ir)
        assert client_first.startswith(b"n,,")
        bare = client_first[3:]
        attrs = dict(a.split(b"=", 1) for a in bare.split(b","))
        assert attrs[b"n"] == user.encode()
        nonce = attrs[b"r"] + b"SERVERPART"
        server_first = b"r=%s,s=%s,i=%d" % (nonce, base64.b64encode(salt),
                                            iterations)
        conn.send(b"+ " + b64(server_first) + b"\r\n")
        client_final = base64.b64decode(conn.recv_line().rstrip(b"\r\n"))
        without_proof, _, proof = client_final.rpartition(b",p=")
        assert without_proof == b"c=biws,r=" + nonce
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt,
                                     iterations)
        client_key = hmac.new(salted, b"Client Key", h).digest()
        auth_message = bare + b"," + server_first + b"," + without_proof
        client_sig = hmac.new(h(client_key).digest(), auth_message,
                              h).digest()
        expected = bytes(a ^ b for a, b in zip(client_key, client_sig))
        if base64.b64decode(proof) != expected:
            conn.send(b"-ERR [AUTH] Authentication failed.\r\n")
            return
        if ok_early:
            conn.send(b"+OK Logged in.\r\n")
            return
        server_key = hmac.new(salted, b"Server Key", h).digest()
        signature = hmac.new(server_key, auth_message, h).digest()
        if tamper_signature:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        conn.send(b"+ " + b64(b"v=" + b64(signature)) + b"\r\n")
        if conn.recv_line().rstrip(b"\r\n") != b"":
            conn.send(b"-ERR expected an empty response\r\n")
            return
        conn.send(b"+OK Logged in.\r\n")
        conn.recv_line()            # QUIT
        conn.send(b"+OK bye\r\n")

    return handler
