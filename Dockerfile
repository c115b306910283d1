# The gateway's image: `workestra serve` by default; the compose file also runs `worker` from it.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 WORKESTRA_DATA_DIR=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY portal portal
COPY storage storage
COPY templates templates
RUN pip install --no-cache-dir . && useradd --system --home /data workestra \
    && mkdir -p /data && chown workestra /data
USER workestra
VOLUME /data
EXPOSE 2525 8000
CMD ["workestra", "serve", "--host", "0.0.0.0"]
