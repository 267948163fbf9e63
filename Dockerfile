# CPU image for `transduce serve`: the web page, the native API and the LibreTranslate API.
#
# Build:
#   docker build -t transduce .
# Run (mount a trained model directory read-only; open http://localhost:8000/):
#   docker run --rm -p 8000:8000 -v "$PWD/runs/ende:/models/en-de:ro" transduce /models/en-de
# Several models, API keys (one per line in keys.txt), CORS for one site:
#   docker run --rm -p 8000:8000 -v "$PWD/runs:/models:ro" -v "$PWD/keys.txt:/run/keys:ro" \
#     transduce en-de=/models/ende de-en=/models/deen --api-key-file /run/keys \
#     --cors-origin https://example.org
# `docker stop` sends SIGTERM: requests in flight are answered before the server exits.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The CPU build of torch from PyTorch's own index: PyPI's default wheel pulls CUDA (GBs).
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

COPY requirements.txt pyproject.toml README.md ./
COPY transduce ./transduce
# The tested pins as constraints: only what the serve extra needs gets installed.
RUN grep -v -e '^torch==' -e '^-e ' requirements.txt > /tmp/pins.txt \
    && pip install -c /tmp/pins.txt ".[serve]" \
    && rm /tmp/pins.txt

RUN useradd --system --uid 10001 --no-create-home transduce
USER transduce

EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]

ENTRYPOINT ["transduce", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["/models/model"]
