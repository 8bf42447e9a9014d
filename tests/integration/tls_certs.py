"""Throwaway test PKI for integration tests (wraps tests/certs.sh).

    from tls_certs import make_certs
    pki = make_certs(self.tmpdir())      # dict: name -> absolute path
    pki["ca.crt"], pki["server.crt"], pki["server.key"], pki["chain-server.crt"], ...

Files (EC P-256, PEM, valid 2 days): ca.crt/.key (root), server.crt/.key (leaf
signed by the root, SAN DNS:localhost + IP:127.0.0.1), inter.crt/.key
(intermediate), chain-server.crt/.key (leaf signed by the intermediate; the .crt
is the full chain), client.crt/.key (clientAuth, signed by the root),
other-ca.crt/.key and other-client.crt/.key (an unrelated CA and a client it
signed, for "wrong CA" tests), rsa-server.crt/.key (as server, RSA 2048 key).
Takes well under a second.
"""
import os
import subprocess

CERTS_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "certs.sh")
NAMES = ["ca", "other-ca", "server", "inter", "chain-server", "client", "other-client",
         "rsa-server", "device1", "device2"]


def make_certs(directory):
    """Generates the PKI into `directory`; returns {file name: absolute path}."""
    subprocess.run(["sh", CERTS_SH, directory], check=True, timeout=60,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = {}
    for n in NAMES:
        for ext in ("crt", "key"):
            path = os.path.join(os.path.abspath(directory), f"{n}.{ext}")
            if not os.path.exists(path):
                raise RuntimeError(f"certs.sh did not produce {path}")
            out[f"{n}.{ext}"] = path
    return out
