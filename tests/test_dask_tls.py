"""cfutures.dask on a TLS-only Dask cluster: DaskExecutor(address, security=distributed.Security(
...)), certificates from Dask's configuration, and `python -m cfutures run --dask tls://...` /
CFUTURES_DASK=tls://... with the certificates in DASK_* environment variables or a Dask config
file.

The module's cluster: a certificate authority and certificates made with the openssl command
(tests/tls_certs.py), a scheduler listening on tls://127.0.0.1 only and WORKERS workers, each
with a certificate of its role, all requiring encryption. They are `dask scheduler` and
`dask worker` processes, each in a session of its own, stopped (their whole session) when the
module ends, pass or fail; should pytest itself be killed, the scheduler ends after
--idle-timeout and its workers after their --death-timeout.
"""

import gc
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402
from distributed.comm.core import CommClosedError, FatalCommClosedError  # noqa: E402

import tls_certs  # noqa: E402
from cfutures.dask import DaskExecutor  # noqa: E402
from process_helpers import mul  # noqa: E402

WORKERS = 2
STARTUP_SECONDS = 30
# A refused client must fail at once, well before Dask's connect timeout (passed as CONNECT).
CONNECT, FAST = 10, 5


def _clean_env(**extra):
    """This process's environment without cfutures' routing or any Dask configuration."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CFUTURES_DASK", "CFUTURES_INSTALL", "DASK_CONFIG")
           and not k.startswith("DASK_")}
    env.update(extra)
    return env


def _tls_options(cert, key, pki):
    return ["--tls-ca-file", pki.ca, "--tls-cert", cert, "--tls-key", key]


def _start(module, args, log_path, env):
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _stop(processes):
    """Stops each process's session: SIGTERM, then SIGKILL for what is left after 10 s. The
    workers first: a worker told to close by its scheduler and by SIGTERM at once can hang."""
    for group in (processes[1:], processes[:1]):
        for proc in group:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for proc in group:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # what is left of its session
            except ProcessLookupError:
                pass
            proc.wait(10)


def _logs(directory):
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(directory.glob("*.log")))


def client_security(pki, cert=None, key=None, ca=None):
    return distributed.Security(tls_ca_file=ca or pki.ca, tls_client_cert=cert or pki.client_cert,
                                tls_client_key=key or pki.client_key, require_encryption=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not tls_certs.openssl_available():
        pytest.skip("needs the openssl command")
    return tls_certs.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_cluster(pki, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls-cluster")
    # No profiler: it reads other threads' frames, which crashes free-threaded 3.13
    # (cfutures._dask_remote.FRAMES_OF_OTHER_THREADS_UNSAFE), and these tests do not need it.
    env = _clean_env(DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION="True",
                     DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED="False")
    scheduler_file = directory / "scheduler.json"
    processes = []
    try:
        processes.append(_start("distributed.cli.dask_scheduler", [
            "--host", "127.0.0.1", "--port", "0", "--protocol", "tls",
            *_tls_options(pki.scheduler_cert, pki.scheduler_key, pki),
            "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file),
            "--idle-timeout", "300s"], directory / "scheduler.log", env))
        deadline = time.monotonic() + STARTUP_SECONDS
        address = None
        while address is None:
            try:
                address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):  # not written yet, or not wholly
                if processes[0].poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the TLS scheduler did not start\n{_logs(directory)}")
                time.sleep(0.05)
        assert address.startswith("tls://127.0.0.1:"), address
        for i in range(WORKERS):
            processes.append(_start("distributed.cli.dask_worker", [
                address, "--no-nanny", "--nthreads", "1", "--name", f"tls-worker-{i}",
                "--no-dashboard", "--memory-limit", "0", "--death-timeout", "30s",
                "--local-directory", str(directory),
                *_tls_options(pki.worker_cert, pki.worker_key, pki)],
                directory / f"worker-{i}.log", env))
        with distributed.Client(address, security=client_security(pki), timeout=CONNECT,
                                set_as_default=False) as client:
            try:
                client.wait_for_workers(WORKERS, timeout=STARTUP_SECONDS)
            except TimeoutError:
                pytest.fail(f"the TLS workers did not join\n{_logs(directory)}")
            workers = set(client.scheduler_info()["workers"])
            # Threads Dask starts on first use (and keeps) start here, not in a test (no_leaks).
            distributed.utils._offload_executor.submit(int).result()
        yield SimpleNamespace(address=address, workers=workers, pki=pki, directory=directory)
    finally:
        _stop(processes)


# --- DaskExecutor(address, security=...) ----------------------------------------------------

def test_the_cluster_is_tls_only(tls_cluster):
    assert len(tls_cluster.workers) == WORKERS
    assert all(w.startswith("tls://127.0.0.1:") for w in tls_cluster.workers)


def test_executor_with_the_clusters_certificates_submits_maps_and_raises(tls_cluster):
    with DaskExecutor(tls_cluster.address, security=client_security(tls_cluster.pki),
                      timeout=CONNECT) as ex:
        assert ex.submit(mul, 6, 7).result(timeout=30) == 42
        assert list(ex.map(mul, range(20), range(20), chunksize=3)) == [i * i for i in range(20)]
        where = ex.submit(lambda: distributed.get_worker().address).result(timeout=30)
        assert where in tls_cluster.workers
        with pytest.raises(ZeroDivisionError) as info:
            ex.submit(divmod, 1, 0).result(timeout=30)
        assert "ZeroDivisionError" in str(info.value.__cause__)  # the remote traceback
        assert ex._client.security.require_encryption


def test_certificates_from_dask_configuration(tls_cluster):
    """No security=: distributed.Client builds Security() from Dask's configuration (the keys
    DASK_DISTRIBUTED__COMM__TLS__... variables and config files set)."""
    pki = tls_cluster.pki
    with dask.config.set({"distributed.comm.tls.ca-file": pki.ca,
                          "distributed.comm.tls.client.cert": pki.client_cert,
                          "distributed.comm.tls.client.key": pki.client_key,
                          "distributed.comm.require-encryption": True}):
        with DaskExecutor(tls_cluster.address, timeout=CONNECT) as ex:
            assert list(ex.map(mul, [2, 3], [5, 7])) == [10, 21]


# A tls:// client without a certificate: cfutures names the settings that carry it.
NO_CERTIFICATE = "needs this client.s certificate.*DASK_DISTRIBUTED__COMM__TLS__CA_FILE"

NO_TLS = {"distributed.comm.tls.ca-file": None, "distributed.comm.tls.client.cert": None,
          "distributed.comm.tls.client.key": None}

# The scheduler cuts a client whose certificate its CA did not sign. Under TLS 1.3 it checks that
# certificate once the client's side of the handshake is done, so the client sees its alert
# ("unknown ca") or, when the connection is closed before the alert is read, an EOF or a reset
# (seen on 3.13t).
UNKNOWN_CA = "unknown ca|EOF occurred in violation of protocol|Connection reset by peer"

# case -> (address scheme, security from the pki or None for Dask's configuration (cleared),
#          the exception, what its message says)
REFUSED = {
    # Dask makes no TLS context without a client certificate: it refuses before connecting.
    "no certificate": ("tls", None, TypeError, NO_CERTIFICATE),
    "CA but no certificate": ("tls", lambda p: distributed.Security(tls_ca_file=p.ca),
                              TypeError, NO_CERTIFICATE),
    "certificate of another CA": (
        "tls", lambda p: client_security(p, p.rogue_cert, p.rogue_key),
        CommClosedError, UNKNOWN_CA),
    # Trusting another CA only, the client refuses the scheduler's certificate.
    "another CA altogether": (
        "tls", lambda p: client_security(p, p.rogue_cert, p.rogue_key, ca=p.other_ca),
        FatalCommClosedError, "TLS certificate does not match"),
    # Plain TCP to the TLS port: the scheduler drops the connection.
    "plain tcp": ("tcp", None, CommClosedError, None),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_client_without_the_clusters_certificate_is_refused_at_once(tls_cluster, case):
    scheme, security, error, message = REFUSED[case]
    address = tls_cluster.address.replace("tls://", f"{scheme}://")
    kwargs = {} if security is None else {"security": security(tls_cluster.pki)}
    start = time.monotonic()
    with dask.config.set(NO_TLS), pytest.raises(error, match=message) as info:
        DaskExecutor(address, timeout=CONNECT, **kwargs)
    elapsed = time.monotonic() - start
    # The failed client's event loop thread is stopped (the no_leaks fixture checks it).
    del info
    gc.collect()
    # Refused for good: not retried until the connect timeout.
    assert elapsed < FAST


def test_the_scheduler_requires_a_client_certificate(tls_cluster):
    """Below Dask's client: a TLS connection that trusts the CA but shows no certificate is cut
    by the scheduler (during the handshake, or at the first read under TLS 1.3)."""
    host, port = tls_cluster.address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=tls_cluster.pki.ca)
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=FAST) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError),
                           match="certificate required|handshake failure|EOF occurred|reset"):
            with context.wrap_socket(raw) as tls:
                assert "scheduler" in str(tls.getpeercert()["subject"])
                tls.recv(1)


# --- python -m cfutures run --dask tls://..., CFUTURES_DASK=tls://... -------------------------

SCRIPT = """
import concurrent.futures, os

def square(x):
    return x * x

def where():
    from distributed import get_worker
    return get_worker().address

def fail():
    raise ValueError("raised on a worker")

if __name__ == "__main__":
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        print("class", type(ex).__module__)
        print("map", list(ex.map(square, range(5), chunksize=2)))
        print("worker", ex.submit(where).result())
        try:
            ex.submit(fail).result()
        except ValueError as e:
            print("error", e)
"""


def _certificates_env(pki, cert, key, tmp_path, how):
    """The client's certificate paths in DASK_* variables, or in a config file in DASK_CONFIG."""
    if how == "env":
        return {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": pki.ca,
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": cert,
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": key,
                "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    config = tmp_path / "dask-config"
    config.mkdir()
    (config / "tls.yaml").write_text(textwrap.dedent(f"""\
        distributed:
          comm:
            require-encryption: true
            tls:
              ca-file: {pki.ca}
              client:
                cert: {cert}
                key: {key}
        """))
    return {"DASK_CONFIG": str(config)}


def _run_script(tls_cluster, tmp_path, route, env):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    if route == "run":
        command = [sys.executable, "-m", "cfutures", "run", "--dask", tls_cluster.address,
                   str(script)]
    else:
        command = [sys.executable, str(script)]
        env = {**env, "CFUTURES_DASK": tls_cluster.address}
    start = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL, env=_clean_env(**env))
    return out, time.monotonic() - start


@pytest.mark.parametrize("route, how", [("run", "env"), ("CFUTURES_DASK", "env"),
                                        ("CFUTURES_DASK", "config-file")])
def test_process_pools_routed_to_tls_take_the_certificates_from_dask_config(
        tls_cluster, tmp_path, route, how):
    pki = tls_cluster.pki
    out, _ = _run_script(tls_cluster, tmp_path, route,
                         _certificates_env(pki, pki.client_cert, pki.client_key, tmp_path, how))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4, out.stdout + out.stderr
    assert lines[:2] == ["class cfutures.dask", "map [0, 1, 4, 9, 16]"], out.stderr
    assert lines[2].split()[0] == "worker" and lines[2].split()[1] in tls_cluster.workers
    assert lines[3:] == ["error raised on a worker"]


@pytest.mark.parametrize("certificate", ["none", "of another CA"])
def test_run_dask_tls_without_the_clusters_certificate_fails_at_once(
        tls_cluster, tmp_path, certificate):
    pki = tls_cluster.pki
    if certificate == "none":
        env, message = {}, NO_CERTIFICATE
    else:
        env = _certificates_env(pki, pki.rogue_cert, pki.rogue_key, tmp_path, "env")
        message = UNKNOWN_CA
    out, elapsed = _run_script(tls_cluster, tmp_path, "run", env)
    assert out.returncode == 1 and out.stdout == "", out.stderr
    assert re.search(message, out.stderr), out.stderr
    # The refusal is final: not retried until Dask's connect timeout (30 s by default).
    assert elapsed < 20, out.stderr
