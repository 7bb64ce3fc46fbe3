# syntax=docker/dockerfile:1
# Corral: one image for `corral operator`, `corral worker` and `corral dashboard`.
#
#   docker build -t corral:0.1.0 .
#   docker run --rm corral:0.1.0 --help
#
# Extend it with your own tasks (see docs/install.md):
#
#   FROM corral:0.1.0
#   USER root
#   COPY . /src/myapp
#   RUN pip install --no-cache-dir /src/myapp
#   USER 65532:65532

ARG PYTHON_VERSION=3.11

# ---- build: wheels of the core, the worker, the operator and the dashboard, then a venv
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY . .

# Dependencies only as prebuilt wheels: a build never needs (or ships) a compiler.
# The image runs `corral worker`, `corral operator` and `corral dashboard`: it holds all four.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . ./worker ./operator ./dashboard \
 && python -m venv /opt/corral \
 && /opt/corral/bin/pip install --only-binary=:all: --find-links /wheels \
      corral corral-worker corral-operator corral-dashboard \
 && /opt/corral/bin/corral --help > /dev/null

# ---- runtime: the slim base plus the venv; no build tools, no source tree ----
FROM python:${PYTHON_VERSION}-slim-bookworm

# 65532 is the conventional "nonroot" id; worker pods run as it by default too.
RUN groupadd --system --gid 65532 corral \
 && useradd --system --uid 65532 --gid corral --home-dir /home/corral --create-home \
      --shell /usr/sbin/nologin corral

COPY --from=build /opt/corral /opt/corral

ENV PATH=/opt/corral/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

USER 65532:65532
WORKDIR /home/corral
# 9100: worker metrics and probes; 8080/8081: operator metrics and health; 8000: dashboard.
EXPOSE 9100 8080 8081 8000
ENTRYPOINT ["corral"]
CMD ["--help"]
