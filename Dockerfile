# rerankd container image: Debian bookworm, two stages.
#   build:   the project's own dependency installer and CMake build (Release), plus the demo
#            model (MiniLM-L6 shape, random weights) so that the image serves out of the box;
#   runtime: bookworm-slim with only the shared libraries rerankd and rerankctl link, running as
#            an unprivileged user, with the model directory and data/ (flags file, audit log) as
#            volumes and a HEALTHCHECK on the admin plane's /ready.
# Build: docker build -t rerankd .        (docker-compose.yml and fly.toml build this file)
# Run:   docker run -p 50051:50051 -p 127.0.0.1:8000:8000 -v rerankd-data:/srv/rerankd/data rerankd
# A real model: mount its directory (model.pt, vocab.txt, model.yaml) and point
# RERANKER_MODEL_DIR at it, e.g. -v /srv/models/minilm:/models/minilm:ro
# -e RERANKER_MODEL_DIR=/models/minilm.

FROM debian:bookworm AS build
WORKDIR /src
# Dependencies first: this layer is reused as long as the package list does not change.
COPY deploy/install_deps.sh deploy/install_deps.sh
RUN bash deploy/install_deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target rerankd rerankctl rerank_fused_ops \
 && mkdir -p /out/bin \
 && cp "$(find /build -type f -name rerankd -perm -u+x | head -n1)" /out/bin/rerankd \
 && cp "$(find /build -type f -name rerankctl -perm -u+x | head -n1)" /out/bin/rerankctl \
 && RERANKER_MODEL_DIR=/out/models/demo-minilm-l6 BUILD=/build bash deploy/make_demo_model.sh

FROM debian:bookworm-slim AS runtime
# The shared libraries of rerankd and rerankctl (tests/deploy_containers_test.py checks this list
# against the built binaries; zlib: gzip of rotated audit files), OpenBLAS for libtorch, curl for
# the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libtorch1.13 libgomp1 libopenblas0-pthread libtcmalloc-minimal4 \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libprometheus-cpp-core1.0 libyaml-cpp0.7 libspdlog1.10 libfmt9 libicu72 libcurl4 zlib1g \
      curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /srv/rerankd --shell /usr/sbin/nologin rerankd \
 && mkdir -p /srv/rerankd/data /srv/rerankd/models \
 && chown -R rerankd:rerankd /srv/rerankd
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=rerankd:rerankd /out/models/ /srv/rerankd/models/
WORKDIR /srv/rerankd
# The built-in defaults (see .env.example) with the listen addresses opened for a container:
# the admin HTTP port must be reachable by the health check, Prometheus and the kubelet;
# state-changing admin calls still need RERANKER_ADMIN_TOKEN. Relative paths resolve against
# /srv/rerankd: models/demo-minilm-l6, data/flags.yaml, data/reranker_audit.jsonl.
ENV RERANKER_GRPC_LISTEN=0.0.0.0:50051 \
    RERANKER_API_HTTP_LISTEN=0.0.0.0:8080 \
    RERANKER_HTTP_LISTEN=0.0.0.0:8000 \
    RERANKER_ADMIN_GRPC_LISTEN=0.0.0.0:50052 \
    OPENBLAS_NUM_THREADS=1
USER 10001:10001
VOLUME ["/srv/rerankd/models", "/srv/rerankd/data"]
# 50051 data-plane gRPC, 8080 data-plane HTTP (Cohere/Jina/TEI rerank), 8000 admin HTTP
# (/health /ready /metrics /flags), 50052 admin gRPC.
EXPOSE 50051 8080 8000 50052
# /ready is 200 only once the model is loaded and warmed up, and 503 while draining; the start
# period covers model loading.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8000/ready || exit 1
# SIGTERM drains (server.drain_timeout_ms, 10 s by default): give `docker stop` more, e.g. -t 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rerankd"]
