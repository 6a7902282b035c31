# The Pocho realtime server. Build: docker build -t pocho-rt .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pocho_rt ./pocho_rt
COPY engine ./engine
COPY persistence ./persistence
COPY adapters ./adapters
COPY scripts ./scripts
RUN pip install --no-cache-dir . && useradd --system pocho
USER pocho
ENV PORT=8080 POCHO_ENV=production
EXPOSE 8080
CMD ["pocho-rt", "serve", "--migrate"]
