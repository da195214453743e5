"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas (offline, kubernetes-validate's copy),
and agreeing with what it runs: the image and user the Dockerfile builds, the flags `fer-server --help`,
`fer-web --help` and `envoy --help` offer, the ports and probe paths the programs serve, the Envoy
configuration the ConfigMap carries, and the gauge the autoscaler reads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from starlette.datastructures import Headers

from conftest import REPO

DEPLOY = REPO / "deploy"
KUBERNETES_VERSION = kubernetes_validate.latest_version()
SERVER_IMAGE_NAME = "ferstream-server"  # the name docs/deploy.md builds the Dockerfile's image as


@cache
def kustomization() -> dict:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def generated_config_maps() -> list[dict]:
    """The ConfigMaps kustomization.yaml's configMapGenerator makes (before kustomize adds its hash): one key
    per file, named after the file, holding its text."""
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
             "data": {Path(name).name: (DEPLOY / name).read_text() for name in generator["files"]}}
            for generator in kustomization().get("configMapGenerator", [])]


@cache
def manifests() -> tuple[dict, ...]:
    """Every object kubectl apply -k deploy/ creates."""
    documents = [document for resource in kustomization()["resources"]
                 for document in yaml.safe_load_all((DEPLOY / resource).read_text()) if document]
    return (*documents, *generated_config_maps())


def objects(kind: str) -> list[dict]:
    return [document for document in manifests() if document["kind"] == kind]


def named(kind: str, name: str) -> dict:
    (found,) = [document for document in objects(kind) if document["metadata"]["name"] == name]
    return found


def containers() -> list[tuple[dict, dict]]:
    """(Deployment, container) of every container."""
    return [(deployment, container) for deployment in objects("Deployment")
            for container in deployment["spec"]["template"]["spec"]["containers"]]


def program_path(program: str) -> str:
    """A command of this environment's bin/ (as installed with it), else from PATH."""
    path = shutil.which(program, path=str(Path(sys.executable).parent)) or shutil.which(program)
    assert path is not None, f"{program} is not installed (`pip install -e .[dev]`)"
    return path


@cache
def help_flags(program: str) -> frozenset[str]:
    """The long options `program --help` lists."""
    result = subprocess.run([program_path(program), "--help"], capture_output=True, text=True, timeout=120)
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.stdout + result.stderr))


def flags(arguments: list[str]) -> list[str]:
    return [argument.split("=", 1)[0] for argument in arguments if argument.startswith("--")]


def option(arguments: list[str], name: str) -> str:
    """The value following `name` in a container's arguments."""
    return arguments[arguments.index(name) + 1]


def container_port(container: dict, name: str) -> int:
    (port,) = [port["containerPort"] for port in container["ports"] if port["name"] == name]
    return port


def probes(container: dict) -> list[dict]:
    return [container[key] for key in ("startupProbe", "readinessProbe", "livenessProbe") if key in container]


def probe_port(container: dict, port: int | str) -> int:
    return port if isinstance(port, int) else container_port(container, port)


@cache
def dockerfile() -> dict:
    """What the Dockerfile builds: ENTRYPOINT and CMD (exec form), EXPOSEd ports, the user's uid."""
    text = (REPO / "Dockerfile").read_text()
    instructions = dict(re.findall(r"^(ENTRYPOINT|CMD) (\[.*\])$", text, re.MULTILINE))
    return {"entrypoint": json.loads(instructions["ENTRYPOINT"]), "cmd": json.loads(instructions["CMD"]),
            "expose": {int(port) for line in re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE)
                       for port in line.split()},
            "uid": int(re.search(r"useradd .*--uid (\d+)", text).group(1))}


def package_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def console_scripts() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


def runs_image_built_here(container: dict) -> bool:
    return container["image"].rsplit(":", 1)[0].endswith("/" + SERVER_IMAGE_NAME)


def envoy_config() -> dict:
    return yaml.safe_load((DEPLOY / "envoy" / "envoy.yaml").read_text())


@pytest.mark.parametrize("document", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_against_the_kubernetes_schemas(document: dict) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)  # raises ValidationError


def test_kustomization_applies_every_manifest() -> None:
    listed = {DEPLOY / resource for resource in kustomization()["resources"]}
    assert listed == set((DEPLOY / "kubernetes").glob("*.yaml"))


def test_the_server_containers_run_the_dockerfiles_image_as_it_offers() -> None:
    built = dockerfile()
    server_containers = [(deployment, c) for deployment, c in containers() if "command" not in c
                         and runs_image_built_here(c)]
    assert server_containers, "a Deployment runs fer-server"
    for deployment, container in server_containers:
        assert container["image"].endswith(":" + package_version())
        # No command: the image's ENTRYPOINT runs, and args replace its CMD.
        command_line = [*built["entrypoint"], *container["args"]]
        assert Path(command_line[0]).name == "fer-server"
        assert set(flags(command_line)) <= help_flags("fer-server"), "every flag is one fer-server offers"
        from ferstream.server.config import build_parser, config_from_args

        config = config_from_args(build_parser().parse_args(command_line[1:]))  # ValueError if it would refuse

        grpc_port = container_port(container, "grpc")
        assert grpc_port == config.port and grpc_port in built["expose"]
        for probe in probes(container):
            assert probe_port(container, probe["grpc"]["port"]) == grpc_port, "probes use the gRPC health service"
        assert container_port(container, "metrics") == config.metrics_port
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == config.metrics_port and config.metrics_host == "0.0.0.0"

        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == built["uid"]
        assert pod["terminationGracePeriodSeconds"] > config.grace_s, "open streams drain before the kill"
        # docs/deploy.md: a CPU quota does not shrink the cores the server sees; --detect-workers must.
        assert config.detect_workers == int(container["resources"]["limits"]["cpu"])


def test_the_web_gateway_runs_fer_web_as_it_offers() -> None:
    from ferstream.web.openapi import openapi_document

    (deployment, container), = [(d, c) for d, c in containers() if c.get("command", [None])[0] == "fer-web"]
    assert runs_image_built_here(container) and container["image"].endswith(":" + package_version())
    assert "fer-web" in console_scripts()
    arguments = container["args"]
    assert set(flags(arguments)) <= help_flags("fer-web")
    assert int(option(arguments, "--port")) == container_port(container, "http")
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == dockerfile()["uid"]
    paths = openapi_document(1)["paths"]
    for probe in probes(container):
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] in paths
            assert probe_port(container, probe["httpGet"]["port"]) == container_port(container, "http")
    # Its fer-server: a Service of these manifests, on the Service's gRPC port.
    target = option(arguments, "--server").removeprefix("dns:///")
    host, port = target.rsplit(":", 1)
    service = named("Service", host.split(".")[0])
    assert int(port) in [entry["port"] for entry in service["spec"]["ports"]]


def test_the_web_gateway_serves_beyond_loopback_only_to_callers_with_a_token() -> None:
    """fer-web on a non-loopback --host: --auth-tokens from a mounted Secret that docs/deploy.md tells how to
    create, readable by the pod's user; the Service's name and the public name pass its Host and Origin checks."""
    from ferstream.auth.tokens import is_loopback
    from ferstream.web.guard import AccessPolicy

    (deployment, container), = [(d, c) for d, c in containers() if c.get("command", [None])[0] == "fer-web"]
    arguments = container["args"]
    assert not is_loopback(option(arguments, "--host"))
    assert "--auth-tokens" in arguments, "a gateway beyond loopback authenticates its callers"
    tokens_path = Path(option(arguments, "--auth-tokens"))
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == tokens_path.parent]
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    assert not secret.get("optional", False), "no pod starts without its tokens"
    # Secret volumes belong to root: the pod's user reads the file through fsGroup's group.
    assert secret["defaultMode"] & 0o040 and pod["securityContext"]["fsGroup"] is not None
    assert not secret["defaultMode"] & 0o004, "tokens are not world-readable"
    # The Secret itself holds tokens, so it is no file here: docs/deploy.md creates it, with this key.
    assert all(document["kind"] != "Secret" for document in manifests())
    docs = (REPO / "docs" / "deploy.md").read_text()
    assert f"kubectl create secret generic {secret['secretName']} --from-file={tokens_path.name}=" in docs

    allowed_hosts = [arguments[i + 1] for i, argument in enumerate(arguments) if argument == "--allow-host"]
    policy = AccessPolicy(bound_host=option(arguments, "--host"), hosts=tuple(allowed_hosts),
                          origins=tuple(arguments[i + 1] for i, a in enumerate(arguments) if a == "--allow-origin"))
    assert policy.host_problem(f"{deployment['metadata']['name']}:80") is None, "in-cluster callers by Service name"
    assert policy.host_problem("10.1.2.3:8080") is None, "the kubelet's probes, by the pod's address"
    assert policy.host_problem("rebound.attacker.example") is not None
    for name in allowed_hosts:
        # Behind an Ingress that terminates HTTPS the gateway sees http://: the page's https:// origin is allowed.
        websocket = {"type": "websocket", "scheme": "ws", "path": "/v1/live"}
        headers = Headers({"host": name, "origin": f"https://{name}"})
        if "." in name:
            assert policy.origin_problem(websocket, headers) is None, f"the page served as https://{name}"


def test_envoy_runs_the_shipped_configuration_in_the_tested_version() -> None:
    (deployment, container), = [(d, c) for d, c in containers() if c["image"].startswith("envoyproxy/envoy:")]
    output = subprocess.run([program_path("envoy"), "--version"], capture_output=True, text=True, timeout=60).stdout
    version = re.search(r"version: \w+/(\d+\.\d+\.\d+)/", output).group(1)
    assert container["image"] == f"envoyproxy/envoy:v{version}", "the image runs the Envoy the tests run"
    arguments = container["args"]
    assert set(flags(arguments)) <= help_flags("envoy")

    # --config-path is the ConfigMap made from deploy/envoy/envoy.yaml.
    config_path = Path(option(arguments, "--config-path"))
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    config_map = named("ConfigMap", volume["configMap"]["name"])
    assert yaml.safe_load(config_map["data"][config_path.name]) == envoy_config()

    config = envoy_config()
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    assert container_port(container, "grpc") == listeners["grpc"]["address"]["socket_address"]["port_value"]
    ready_port = listeners["ready"]["address"]["socket_address"]["port_value"]
    assert container_port(container, "ready") == ready_port
    (health_filter,) = [f for f in listeners["ready"]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
                        if f["name"] == "envoy.filters.http.health_check"]
    (ready_path,) = [h["string_match"]["exact"] for h in health_filter["typed_config"]["headers"]
                     if h["name"] == ":path"]
    for probe in probes(container):
        if "httpGet" in probe:
            assert probe["httpGet"]["path"] == ready_path
        port = probe.get("httpGet", probe.get("tcpSocket"))["port"]
        assert probe_port(container, port) == ready_port
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1", "admin stays on loopback"

    # Its upstreams: the headless Service of the fer-server pods, on their gRPC port.
    (cluster,) = config["static_resources"]["clusters"]
    (endpoint,) = [e["endpoint"]["address"]["socket_address"]
                   for group in cluster["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]
    service = named("Service", endpoint["address"].split(".")[0])
    assert service["spec"]["clusterIP"] == "None", "headless: DNS gives Envoy every pod"
    assert endpoint["port_value"] in [entry["port"] for entry in service["spec"]["ports"]]


def test_services_and_budgets_select_pods_with_their_ports() -> None:
    templates = [deployment["spec"]["template"] for deployment in objects("Deployment")]

    def selected(selector: dict) -> list[dict]:
        return [t for t in templates if selector.items() <= t["metadata"]["labels"].items()]

    for deployment in objects("Deployment"):
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items()
    for service in objects("Service"):
        (template,) = selected(service["spec"]["selector"])
        names = {port["name"] for c in template["spec"]["containers"] for port in c["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= names
    for budget in objects("PodDisruptionBudget"):
        assert len(selected(budget["spec"]["selector"]["matchLabels"])) == 1


def test_the_autoscaler_reads_a_gauge_the_server_exports_through_prometheus_adapter() -> None:
    from prometheus_client import Gauge

    from ferstream.server.metrics import ServerMetrics

    (autoscaler,) = objects("HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    deployment = named(target["kind"], target["name"])
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert autoscaler["spec"]["minReplicas"] >= 2
    (metric,) = autoscaler["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    gauges = {value._name for value in vars(ServerMetrics()).values() if isinstance(value, Gauge)}
    assert name in gauges

    adapter = yaml.safe_load((DEPLOY / "prometheus-adapter" / "values.yaml").read_text())
    (rule,) = [rule for rule in adapter["rules"]["custom"] if rule["name"]["as"] == name]
    assert rule["seriesQuery"].startswith(name + "{")

    # Streams move to new pods only when they reopen: scale down after --max-stream-seconds at the earliest.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    max_stream_seconds = float(option(container["args"], "--max-stream-seconds"))
    assert autoscaler["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= max_stream_seconds


def test_docs_link_every_deploy_file_and_quote_none() -> None:
    """docs/deploy.md links to every file under deploy/ (and to no missing one), shows none of their text as
    a copy that could drift (YAML blocks), and its local-Envoy substitution matches the shipped file."""
    docs = REPO / "docs" / "deploy.md"
    text = docs.read_text()
    linked = {(docs.parent / link).resolve() for link in re.findall(r"\]\((\.\./deploy/[^)#]*)\)", text)}
    files = {path.resolve() for path in DEPLOY.rglob("*") if path.is_file()}
    assert files <= linked, f"not linked from docs/deploy.md: {sorted(map(str, files - linked))}"
    assert all(path.exists() for path in linked), sorted(str(path) for path in linked if not path.exists())
    assert "```yaml" not in text, "link to the file in deploy/ instead of copying it"
    (pattern,) = re.findall(r"sed 's/([^/]+)/", text)
    assert pattern in (DEPLOY / "envoy" / "envoy.yaml").read_text()
