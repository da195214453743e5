"""examples/node: the Node.js client (@grpc/grpc-js, stubs loaded from protos/ at run time) against fer-server.

It must print the same faces the Python client gets for the same photo. Needs `node` and `npm` (`make test`
installs them when missing; without them the tests skip, except under CI=true, where they fail) and the npm
registry for `npm ci`, which installs exactly the committed package-lock.json.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ferstream.client.library import EmotionClient
from ferstream.client.messages import face_to_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "node"
PHOTO = "2008_002506.jpg"  # three large faces


@pytest.fixture(scope="module")
def node_example(node_and_npm) -> Path:
    """examples/node with its dependencies installed from the lockfile (node_modules/ is git-ignored)."""
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    return EXAMPLE


@pytest.fixture(scope="module")
def server_address(fer_server_factory, fer_models_dir: Path) -> str:
    """A fer-server on loopback for this module."""
    return fer_server_factory("--models-dir", str(fer_models_dir)).address


def run_node(example: Path, *args: str) -> subprocess.CompletedProcess:
    """`node client.js ARGS` in the example's folder."""
    return subprocess.run(["node", "client.js", *args], cwd=example, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("detector", [None, "haar"])
def test_node_prints_the_faces_the_python_client_gets(node_example: Path, server_address: str, faces_dir: Path,
                                                      detector: str | None) -> None:
    photo = faces_dir / PHOTO
    result = run_node(node_example, "--server", server_address, *(["--detector", detector] if detector else []),
                      str(photo))
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]

    with EmotionClient(server_address) as client:
        (response,) = list(client.stream([photo], detector=detector))
    expected = [face_to_dict(face) for face in response.faces]

    assert len(printed) == len(expected) > 0
    for node_face, python_face in zip(printed, expected):
        assert node_face["frame_id"] == 0
        assert node_face["box"] == python_face["box"]
        assert node_face["emotion"] == python_face["emotion"]
        assert node_face["detection_score"] == pytest.approx(python_face["detection_score"], abs=1e-3)
        assert node_face["probabilities"] == pytest.approx(python_face["probabilities"], abs=1e-3)
        assert node_face["track_id"] == python_face["track_id"] >= 1


def test_the_readme_shows_what_the_client_prints(node_example: Path, server_address: str, faces_dir: Path) -> None:
    """The sample output in examples/node/README.md is this client's for the photo it names (the shared
    weights' default detector, YuNet), down to each face's emotion."""
    readme = (node_example / "README.md").read_text()
    assert f"testdata/faces/{PHOTO}" in readme
    sample = readme.split("```json\n", 1)[1].split("```", 1)[0]
    shown = [json.loads(line) for line in sample.splitlines()]
    result = run_node(node_example, "--server", server_address, str(faces_dir / PHOTO))
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(shown) == len(printed)
    for documented, actual in zip(shown, printed):
        assert {key: documented[key] for key in ("frame_id", "box", "emotion", "track_id")} == \
            {key: actual[key] for key in ("frame_id", "box", "emotion", "track_id")}
        assert documented["probabilities"] == pytest.approx(actual["probabilities"], abs=0.01)


def test_node_reports_bad_arguments_with_exit_code_2(node_example: Path, tmp_path: Path) -> None:
    result = run_node(node_example, str(tmp_path / "absent.jpg"))
    assert result.returncode == 2
    assert "error" in result.stderr and result.stdout == ""


def test_server_name_is_the_name_the_servers_certificate_carries(node_example: Path, fer_server_factory,
                                                                  tmp_path: Path, faces_dir: Path) -> None:
    """Over TLS to an address, the certificate's own name is given with --server-name, as fer-client's."""
    from test_security import make_ca, make_leaf

    make_ca(tmp_path, "ca")
    make_leaf(tmp_path, "named", "ca", "subjectAltName=DNS:ferstream.test\nextendedKeyUsage=serverAuth")
    server = fer_server_factory("--tls-cert", str(tmp_path / "named.pem"), "--tls-key", str(tmp_path / "named.key"))
    photo = str(faces_dir / PHOTO)
    tls = ["--server", server.address, "--tls-ca", str(tmp_path / "ca.pem")]
    named = run_node(node_example, *tls, "--server-name", "ferstream.test", photo)
    assert named.returncode == 0, named.stderr
    assert len(named.stdout.splitlines()) == 3
    unnamed = run_node(node_example, *tls, photo)  # 127.0.0.1 is not the certificate's name
    assert unnamed.returncode != 0 and unnamed.stdout == ""
    alone = run_node(node_example, "--server-name", "ferstream.test", photo)
    assert alone.returncode == 2 and "--tls-ca" in alone.stderr
