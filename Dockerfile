# The image the report and GPU price-check CronJobs run: `costplan` and
# nothing else. Build: docker build -t ghcr.io/costplan/costplan:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY costplan ./costplan
# schemas/ ships inside the wheel as costplan/_data/.
COPY schemas ./schemas
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
# Same uid/gid as the CronJobs' securityContext; the root filesystem is
# read-only there, reports go to the mounted volume.
RUN groupadd --gid 10001 costplan && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin costplan
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["costplan"]
CMD ["--help"]
