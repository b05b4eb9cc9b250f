# TutorConnect image: one image, three process kinds (api, projectors, worker) chosen by the command.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
COPY domain domain
COPY application application
COPY projections projections
COPY api api
COPY workers workers
COPY migrations migrations
RUN uv sync --frozen --no-dev
EXPOSE 8000
CMD ["tutorconnect", "api", "--host", "0.0.0.0", "--port", "8000"]
