# syntax=docker/dockerfile:1
#
# kubesweep operator image.
#   docker build -t kubesweep:0.1.0 .
#   docker run --rm kubesweep:0.1.0 --help
# The builder turns the project and its dependencies into wheels; the final stage installs those
# wheels only (no source tree, no compiler, no network) and runs as a numeric non-root user, so
# the pod's runAsNonRoot check can verify it.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
# One wheel for kubesweep plus one per dependency, pinned by pyproject.toml.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kubesweep" \
      org.opencontainers.image.description="Kubernetes-native hyperparameter sweep operator with W&B-compatible Hyperband early termination" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheels are bind-mounted from the builder, so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels kubesweep \
 && kubesweep --help >/dev/null
# Metrics, push endpoint, kopf liveness.
EXPOSE 8080 8081 8090
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["kubesweep"]
CMD ["operator", "--all-namespaces"]
