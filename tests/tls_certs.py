"""Certificates for the TLS tests (tests/test_dask_tls.py), made with the openssl command line
(the ``cryptography`` package, which distributed's Security.temporary needs, is not a test
dependency).

make_pki(directory) writes, as PEM files:
  * a certificate authority, ``ca``, and certificates it signs for the cluster's roles
    (``scheduler``, ``worker``) and for a ``client``;
  * another authority, ``other_ca``, and a ``rogue`` client certificate it signs: a certificate
    the cluster must refuse.
Keys are EC P-256 (made in milliseconds, unlike RSA), unencrypted, valid for two days. Leaf
certificates are X.509 v3, for both server and client authentication, with 127.0.0.1 as their
subject alternative name.
"""

import os
import shutil
import subprocess
from types import SimpleNamespace

LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1
"""


def openssl_available():
    return shutil.which("openssl") is not None


def _openssl(*args, cwd):
    # By its absolute path: a relative directory on PATH is not searched from another cwd.
    out = subprocess.run([os.path.abspath(shutil.which("openssl")), *args], cwd=cwd,
                         capture_output=True, text=True,
                         timeout=30, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{out.stderr}")


def _authority(directory, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=cfutures test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _leaf(directory, name, authority, serial):
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN=cfutures test {name}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{authority}.pem",
             "-CAkey", f"{authority}.key", "-set_serial", str(serial), "-days", "2",
             "-extfile", "leaf.ext", "-out", f"{name}.pem", cwd=directory)


def make_pki(directory):
    """Writes the authorities and certificates into ``directory``; returns their paths as
    attributes: ``ca``, ``other_ca`` (certificates), and ``<role>_cert``, ``<role>_key`` for
    scheduler, worker, client and rogue."""
    directory = os.fspath(directory)
    with open(os.path.join(directory, "leaf.ext"), "w") as f:
        f.write(LEAF_EXTENSIONS)
    _authority(directory, "ca")
    _authority(directory, "other_ca")
    paths = {"ca": "ca.pem", "other_ca": "other_ca.pem"}
    for serial, (name, authority) in enumerate(
            [("scheduler", "ca"), ("worker", "ca"), ("client", "ca"), ("rogue", "other_ca")],
            start=1):
        _leaf(directory, name, authority, serial)
        paths[f"{name}_cert"], paths[f"{name}_key"] = f"{name}.pem", f"{name}.key"
    return SimpleNamespace(**{k: os.path.join(directory, v) for k, v in paths.items()})
