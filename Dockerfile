# ELP speech server. CPU by default; for NVIDIA GPUs build with e.g.
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#                --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124 -t elp-server:cuda .
# (a CUDA base needs python3.11 + pip installed; the default slim base has them)
# It listens on 0.0.0.0, so it needs a key (it refuses to start without one, in one log line):
#   docker run -e ELP_API_KEY=$(openssl rand -hex 16) -p 8000:8000 -v $PWD/models:/models:ro elp-server
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 MKL_CBWR=AUTO,STRICT \
    ELP_HOST=0.0.0.0 ELP_PORT=8000 \
    ELP_ADAPTERS_DIR=/data/adapters ELP_SPEAKERS_DIR=/data/speakers \
    HF_HOME=/data/hf-cache

# libsndfile for soundfile (FLAC/OGG/OPUS); curl-free healthcheck uses python. jemalloc is installed, not
# preloaded: -e LD_PRELOAD=/usr/local/lib/libjemalloc.so.2 -e MALLOC_CONF=background_thread:true held 22-26% less
# memory at the peak under load, at 0.95-1.03x the requests a second on 2 cores (benchmarks/README.md, "jemalloc")
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 libjemalloc2 \
    && ln -s "$(find /usr/lib -name libjemalloc.so.2 -print -quit)" /usr/local/lib/libjemalloc.so.2 \
    && test -e /usr/local/lib/libjemalloc.so.2 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, from the chosen index (CPU wheels by default), so the layer caches across code edits
RUN pip install --index-url ${TORCH_INDEX_URL} "torch>=2.4"
COPY pyproject.toml ./
COPY elp ./elp
COPY server ./server
COPY clients ./clients
# dependencies come from pyproject.toml alone; torch is already satisfied by the layer above
COPY README.md ./
COPY deploy/ray ./deploy/ray
# --build-arg ELP_EXTRAS=ray: the Ray Serve scale-out image (deploy/ray, docs/ray.md)
ARG ELP_EXTRAS=""
RUN pip install ".${ELP_EXTRAS:+[${ELP_EXTRAS}]}"

RUN useradd --create-home --uid 10001 elp && mkdir -p /data/adapters /data/speakers /data/hf-cache /models \
    && chown -R elp:elp /data /models
USER elp
# the compiled beam search (numba) compiled once into the image, not at every container start (~8 s)
ENV NUMBA_CACHE_DIR=/home/elp/.cache/numba
RUN python -c "from elp.decoding.compiled import warm_up; warm_up()"

# the adapter store (and enrolments) live on a volume; mount the backbone under /models
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ELP_PORT', '8000'), timeout=4)"

ENTRYPOINT ["elp-server"]
CMD ["--log-level", "info"]
