"""Transport security and tokens against real servers on loopback, with certificates made here by `openssl`.

One server serves TLS and requires a bearer token; another requires client certificates (mutual TLS).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from ferstream.client.library import EmotionClient
from ferstream.server.config import build_parser, config_from_args
from ferstream.auth.tokens import TokenChecker, is_loopback, load_tokens
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

TOKEN = "s3cret-token-0123456789"
OTHER_TOKEN = "second-token-abcdef"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=ferstream test {name}",
            cwd=folder)


def make_leaf(folder: Path, name: str, ca: str, extensions: str) -> None:
    (folder / f"{name}.ext").write_text(extensions + "\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


@dataclass(frozen=True)
class Pki:
    folder: Path

    def pem(self, name: str) -> bytes:
        return (self.folder / f"{name}.pem").read_bytes()

    def key(self, name: str) -> bytes:
        return (self.folder / f"{name}.key").read_bytes()

    def path(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "ca")
    make_ca(folder, "rogue-ca")
    make_leaf(folder, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    make_leaf(folder, "client", "ca", "extendedKeyUsage=clientAuth")
    make_leaf(folder, "rogue-client", "rogue-ca", "extendedKeyUsage=clientAuth")
    return Pki(folder)


@pytest.fixture(scope="module")
def tls_server(fer_server_factory, pki: Pki, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"# who may call\n{TOKEN}\n\n{OTHER_TOKEN}  # the second client\n")
    return fer_server_factory("--models-dir", str(tmp_path_factory.mktemp("no-models")),
                              "--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key"),
                              "--auth-tokens", str(tokens))


@pytest.fixture(scope="module")
def mtls_server(fer_server_factory, pki: Pki, tmp_path_factory):
    return fer_server_factory("--models-dir", str(tmp_path_factory.mktemp("no-models")),
                              "--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key"),
                              "--tls-client-ca", pki.path("ca.pem"))


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


# --- TLS + tokens ---


def test_tls_with_a_valid_token_annotates(tls_server, pki: Pki, photo: bytes) -> None:
    for token in (TOKEN, OTHER_TOKEN):
        with EmotionClient(tls_server.address, root_certificates=pki.pem("ca"), token=token) as client:
            assert len(client.annotate(photo).faces) == 3
            assert [len(response.faces) for response in client.stream([photo, photo])][-1] == 3
    assert "TLS; 2 bearer token(s) accepted" in tls_server.log()


def test_missing_or_wrong_token_is_unauthenticated_on_every_emotion_rpc(tls_server, pki: Pki, photo: bytes) -> None:
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        with EmotionClient(tls_server.address, root_certificates=pki.pem("ca"), token=token) as client:
            for call in (lambda: client.annotate(photo), client.model_info, lambda: list(client.stream([photo]))):
                error = rpc_error(call)
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, token
                assert "Bearer" in error.details()


def test_token_must_be_a_bearer_authorization_header(tls_server, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(pki.pem("ca"))
    with grpc.secure_channel(tls_server.address, credentials) as channel:
        stub = pb_grpc.EmotionServiceStub(channel)
        for metadata in ((("authorization", TOKEN),), (("authorization", f"Basic {TOKEN}"),),
                         (("x-token", TOKEN),)):
            error = rpc_error(lambda metadata=metadata: stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata,
                                                                        timeout=10))
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        # The scheme is case-insensitive (RFC 7235).
        stub.GetModelInfo(pb.GetModelInfoRequest(), metadata=(("authorization", f"bearer {TOKEN}"),), timeout=10)


def test_health_is_open_without_a_token(tls_server, pki: Pki) -> None:
    with EmotionClient(tls_server.address, root_certificates=pki.pem("ca")) as client:
        assert client.health()
        assert client.health("ferstream.v1.EmotionService")


def test_plaintext_and_untrusted_clients_cannot_connect(tls_server, pki: Pki) -> None:
    with EmotionClient(tls_server.address, token=TOKEN, timeout=5) as client:
        assert rpc_error(client.model_info).code() == grpc.StatusCode.UNAVAILABLE
    with EmotionClient(tls_server.address, root_certificates=pki.pem("rogue-ca"), token=TOKEN, timeout=5) as client:
        assert rpc_error(client.model_info).code() == grpc.StatusCode.UNAVAILABLE


def test_tokens_never_reach_the_log(tls_server, pki: Pki) -> None:
    with EmotionClient(tls_server.address, root_certificates=pki.pem("ca"), token=TOKEN + "-guess") as client:
        rpc_error(client.model_info)
    log = tls_server.log()
    assert "refused: missing or unknown token" in log
    assert TOKEN not in log and OTHER_TOKEN not in log


# --- mutual TLS ---


def test_mtls_accepts_a_client_certificate_from_its_ca(mtls_server, pki: Pki, photo: bytes) -> None:
    with EmotionClient(mtls_server.address, root_certificates=pki.pem("ca"), private_key=pki.key("client"),
                       certificate_chain=pki.pem("client")) as client:
        assert len(client.annotate(photo).faces) == 3
    assert "mutual TLS" in mtls_server.log()


def test_mtls_refuses_clients_without_a_certificate_or_with_a_foreign_one(mtls_server, pki: Pki) -> None:
    attempts = [{}, {"private_key": pki.key("rogue-client"), "certificate_chain": pki.pem("rogue-client")}]
    for attempt in attempts:
        with EmotionClient(mtls_server.address, root_certificates=pki.pem("ca"), timeout=5, **attempt) as client:
            assert rpc_error(client.model_info).code() == grpc.StatusCode.UNAVAILABLE
            assert not client.wait_ready(1.0)


@pytest.mark.slow
def test_fer_client_presents_its_certificate_with_client_cert_and_client_key(mtls_server, pki: Pki,
                                                                             faces_dir: Path, tmp_path: Path) -> None:
    """--client-cert/--client-key are what a client presents (fer-server's --tls-cert/--tls-key are what it serves)."""
    common = ["--server", mtls_server.address, "--tls-ca", pki.path("ca.pem"), "--connect-timeout", "5",
              "--source", str(faces_dir / "2008_002506.jpg"), "--jsonl", str(tmp_path / "faces.jsonl")]
    refused = fer_client(*common)
    assert refused.returncode == 1 and not (tmp_path / "faces.jsonl").exists()
    served = fer_client(*common, "--client-cert", pki.path("client.pem"), "--client-key", pki.path("client.key"))
    assert served.returncode == 0, served.stderr
    assert '"faces"' in (tmp_path / "faces.jsonl").read_text()
    half = fer_client(*common, "--client-cert", pki.path("client.pem"))
    assert half.returncode == 2 and "--client-key" in half.stderr


# --- configuration ---

SERVER = [sys.executable, "-m", "ferstream.server.cli"]


def parse(*argv: str):
    return config_from_args(build_parser().parse_args(list(argv)))


def test_plaintext_off_loopback_is_refused_unless_insecure(pki: Pki) -> None:
    result = subprocess.run([*SERVER, "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to serve plaintext on non-loopback host 0.0.0.0" in result.stderr and "--insecure" in result.stderr
    assert parse("--host", "0.0.0.0", "--insecure").insecure
    tls = parse("--host", "0.0.0.0", "--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")).tls
    assert tls is not None and tls.client_ca is None
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        assert not is_loopback(host), host


def test_half_given_tls_is_an_error(pki: Pki) -> None:
    for argv in (["--tls-cert", pki.path("server.pem")], ["--tls-key", pki.path("server.key")],
                 ["--tls-client-ca", pki.path("ca.pem")]):
        with pytest.raises(ValueError):
            parse(*argv)


def test_tokens_come_from_a_file_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FER_AUTH_TOKENS", raising=False)
    assert load_tokens(None) == ()
    monkeypatch.setenv("FER_AUTH_TOKENS", "one, two\nthree")
    assert load_tokens(None) == ("one", "two", "three")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n\n")
    with pytest.raises(ValueError, match="holds no token"):
        load_tokens(empty)  # an empty file must not silently turn authentication off
    with pytest.raises(ValueError, match="cannot read"):
        load_tokens(tmp_path / "absent.txt")
    result = subprocess.run([*SERVER, "--auth-tokens", str(empty)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "holds no token" in result.stderr
    assert parse().auth_tokens == ("one", "two", "three")
    assert "three" not in repr(parse())


def test_token_checker_wants_the_whole_token() -> None:
    checker = TokenChecker(("abc123", "zzz"))
    assert checker.accepts("Bearer abc123") and checker.accepts("BEARER zzz")
    for header in (None, "", "Bearer", "Bearer ", "Bearer abc12", "Bearer abc1234", "abc123", "Bearer zz"):
        assert not checker.accepts(header), header


# --- the certificate's name, and what fer-client says when it is not the server's ---

CERTIFICATE_NAME = "fer.example"


@pytest.fixture(scope="module")
def named_server(fer_server_factory, pki: Pki, tmp_path_factory):
    """TLS with a certificate for CERTIFICATE_NAME only: 127.0.0.1 is not its name."""
    make_leaf(pki.folder, "named", "ca", f"subjectAltName=DNS:{CERTIFICATE_NAME}\nextendedKeyUsage=serverAuth")
    return fer_server_factory("--models-dir", str(tmp_path_factory.mktemp("no-models")),
                              "--tls-cert", pki.path("named.pem"), "--tls-key", pki.path("named.key"))


def test_server_name_sets_the_name_the_certificate_must_carry(named_server, pki: Pki, photo: bytes) -> None:
    with EmotionClient(named_server.address, root_certificates=pki.pem("ca"), timeout=5) as client:
        assert rpc_error(client.model_info).code() == grpc.StatusCode.UNAVAILABLE
        assert "127.0.0.1" in client.connection_problem()
    with EmotionClient(named_server.address, root_certificates=pki.pem("ca"), server_name=CERTIFICATE_NAME) as client:
        assert client.connection_problem() is None
        assert len(client.annotate(photo).faces) == 3


def fer_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferstream.client.cli", "--headless", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_fer_client_reports_a_certificate_name_mismatch_and_takes_server_name(named_server, pki: Pki,
                                                                             faces_dir: Path, tmp_path: Path) -> None:
    common = ["--server", named_server.address, "--tls-ca", pki.path("ca.pem"),
              "--source", str(faces_dir / "2008_002506.jpg"), "--jsonl", str(tmp_path / "faces.jsonl")]
    refused = fer_client(*common, "--connect-timeout", "3")
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    # gRPC's reason, not only "cannot reach": the name the certificate was checked against.
    assert line.startswith("fer-client: ") and "127.0.0.1" in line.split(named_server.address, 1)[1], line
    assert any(word in line.lower() for word in ("hostname", "ssl", "certificate", "handshake")), line
    served = fer_client(*common, "--server-name", CERTIFICATE_NAME)
    assert served.returncode == 0, served.stderr
    assert '"faces"' in (tmp_path / "faces.jsonl").read_text()


# --- tokens gRPC cannot carry ---

NON_ASCII_TOKEN = "s3cret-tokén"


def test_a_non_ascii_token_is_refused_at_server_start(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text(NON_ASCII_TOKEN + "\n", encoding="utf-8")
    result = subprocess.run([*SERVER, "--port", "0", "--auth-tokens", str(tokens)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "ASCII" in line, line
    with pytest.raises(ValueError, match="ASCII"):
        load_tokens(tokens)


def test_a_non_ascii_token_is_a_local_error_of_the_client(tls_server, pki: Pki, faces_dir: Path,
                                                          tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not valid ASCII metadata"):
        EmotionClient(tls_server.address, root_certificates=pki.pem("ca"), token=NON_ASCII_TOKEN)
    result = fer_client("--server", tls_server.address, "--tls-ca", pki.path("ca.pem"), "--token", NON_ASCII_TOKEN,
                        "--source", str(faces_dir / "2008_002506.jpg"), "--jsonl", str(tmp_path / "faces.jsonl"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "not valid ASCII metadata" in line and "INTERNAL" not in line, line
