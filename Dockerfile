# evalsite image for the full stack (docker-compose.yml).
#   EXTRAS=cpu (default): web and the CPU worker; torch comes from the CPU-only index, not CUDA.
#   EXTRAS=gpu: the vLLM worker (vLLM brings its own CUDA build of torch).
FROM python:3.12-slim

ARG EXTRAS=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EVALSITE_DATA_DIR=/data \
    EVALSITE_MODEL_CACHE=/models \
    STATIC_ROOT=/app/staticfiles

WORKDIR /app
RUN groupadd --system evalsite && useradd --system --gid evalsite --home-dir /app evalsite \
    && mkdir -p /data /models && chown evalsite:evalsite /data /models

# Dependencies first, so code edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p evalsite workers && touch evalsite/__init__.py workers/__init__.py \
    && if [ "$EXTRAS" = "cpu" ]; then \
         pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu; \
       fi \
    && pip install ".[$EXTRAS]" \
    && pip uninstall -y evalsite

COPY . .
RUN pip install --no-deps . \
    && DEBUG=1 EVALSITE_DATA_DIR=/tmp/build-data python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-data

USER evalsite
EXPOSE 8000
CMD ["gunicorn", "evalsite.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
