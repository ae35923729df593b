"""Write the deployment files from tagops' serving defaults, so they never drift from the code.

    python deploy/render.py [--check]

``deploy/serve-config.yaml``: a Ray Serve config for ``serve deploy`` (the output of
``tagops serve --print-serve-config`` plus a runtime environment). ``deploy/rayservice.yaml``: a KubeRay
RayService whose ``serveConfigV2`` is the same application. ``--check`` fails if the files differ from what
would be written (tests/unit/test_serving_deploy.py runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from tagops.config import ServeConfig
from tagops.serving.ray.deployment import serve_deploy_config
from tagops.serving.ray.ingress import RAY_SERVING_ENVIRONMENT

HERE = Path(__file__).resolve().parent
#: The image the Dockerfile at the repository's root builds; docker-compose.yml names the same.
IMAGE = "ghcr.io/tagops/tagops:0.1.0"

SERVE_CONFIG_HEADER = """\
# Ray Serve config for `serve deploy deploy/serve-config.yaml` on a running Ray 2.60 cluster, e.g.
#   RAY_worker_niceness=0 RAY_SERVE_USE_GRPC_BY_DEFAULT=1 RAY_SERVE_ENABLE_HA_PROXY=1 \\
#       ray start --head --num-cpus 2 --dashboard-host 127.0.0.1 && serve deploy deploy/serve-config.yaml
# (what `tagops serve` sets for its embedded cluster, which also moves HAProxy's files and side ports:
# see tagops.serving.ray.ingress.ray_serving_environment; without RAY_SERVE_ENABLE_HA_PROXY, Ray's Python
# proxy relays the requests, about 12 ms slower per request on 2 cores). Written by deploy/render.py
# from the defaults of tagops.config.ServeConfig (`tagops serve --print-serve-config`); do not edit.
#
# Replicas read the prediction-log database from TAGOPS_SERVE_DATABASE_URL and the registry from
# MLFLOW_TRACKING_URI in their environment (secrets stay out of this file); without them the log is
# SQLite and the registry the embedded store, both under TAGOPS_HOME.
# Batch size and wait are the deployment's user_config: change them and `serve deploy` again to apply
# them without restarting replicas.
"""

RAYSERVICE_HEADER = """\
# KubeRay RayService for the tagops prediction API (KubeRay >= 1.5.1 for authOptions, Ray 2.60). Written
# by deploy/render.py; do not edit by hand.
#   kubectl create secret generic tagops-serving --from-literal=database-url='postgresql+psycopg://...'
#   kubectl apply -f deploy/rayservice.yaml
#   TAGOPS_SERVE_DATABASE_URL='postgresql+psycopg://...' tagops keys create --name my-client   # per client
# serveConfigV2 is deploy/serve-config.yaml with three changes for a cluster: the proxy listens on the pod
# network (0.0.0.0: reached only through the Kubernetes Service KubeRay creates; restrict it with a
# NetworkPolicy) on every node, there are 2 replicas, and /v1/predict needs an API key (the keys live in
# the prediction-log database). It keeps Ray's Python proxy (ingress: proxy): Ray 2.60's HAProxy ingress
# is experimental and its stats/metrics ports are fixed per node; on nodes with spare cores the proxy's
# per-request cost matters less than on a 2-core laptop.
# Ray's own control plane: token authentication is on (authOptions: KubeRay generates the token into a
# Secret and gives it to every Ray container), because Ray's dashboard and job API run code for whoever
# reaches them. The dashboard and the GCS listen on the pod network only, for the operator and the
# workers; no port of theirs is published beyond the cluster, and the Ray Client port is not opened.
# TAGOPS_HOME, the registry and the prediction-log database come from the pod environment below. The
# log's journal (log_journal) lies under TAGOPS_HOME: a replica restarted in the same pod writes a killed
# replica's rows; mount a volume there if rows of a lost pod must survive too.
# The image is the one this repository's Dockerfile builds (docs/deployment.md, Container image and
# compose), pushed as {image}: Python 3.11 with tagops and its pinned dependencies, Ray 2.60 among
# them, so KubeRay starts Ray in it as in its own images (`ray` is on the image's PATH, which KubeRay's
# non-login shell keeps), and wget for KubeRay's default probes; it runs as uid 10001. Use PostgreSQL for
# the log: SQLite files are per pod, so replicas on different pods would neither share the log nor follow
# reloads.
"""

CLUSTER = """\
  rayClusterConfig:
    rayVersion: "2.60.0"
    authOptions:
      mode: token                       # RAY_AUTH_MODE=token and a generated RAY_AUTH_TOKEN in every pod
    enableInTreeAutoscaling: true
    headGroupSpec:
      rayStartParams:
        dashboard-host: "0.0.0.0"       # the pod network (the operator deploys through it); token-guarded
        num-cpus: "0"                   # no replicas on the head: it runs the controller and proxy
      template:
        spec:
          containers:
            - name: ray-head
              image: {image}
              env: &tagops-env
                - name: TAGOPS_HOME
                  value: /var/lib/tagops
                - name: MLFLOW_TRACKING_URI
                  value: http://mlflow.mlops.svc.cluster.local:5000
                - name: TAGOPS_SERVE_DATABASE_URL
                  valueFrom:
                    secretKeyRef:
                      name: tagops-serving
                      key: database-url
{ray_env}                - name: RAY_USAGE_STATS_ENABLED
                  value: "0"
              ports:
                - {{containerPort: 6379, name: gcs-server}}
                - {{containerPort: 8265, name: dashboard}}
                - {{containerPort: 8000, name: serve}}
              resources:
                requests: {{cpu: "1", memory: 2Gi}}
                limits: {{cpu: "2", memory: 4Gi}}
              volumeMounts:
                - {{name: tagops-home, mountPath: /var/lib/tagops}}
          volumes:
            - name: tagops-home
              emptyDir: {{}}                # model cache only; the log and registry are services
    workerGroupSpecs:
      - groupName: cpu
        replicas: 2
        minReplicas: 1
        maxReplicas: 4
        rayStartParams: {{}}
        template:
          spec:
            containers:
              - name: ray-worker
                image: {image}
                env: *tagops-env
                resources:
                  requests: {{cpu: "2", memory: 2Gi}}
                  limits: {{cpu: "2", memory: 4Gi}}
                volumeMounts:
                  - {{name: tagops-home, mountPath: /var/lib/tagops}}
            volumes:
              - name: tagops-home
                emptyDir: {{}}
"""


def render() -> dict[Path, str]:
    """The two files' text."""
    local = serve_deploy_config(ServeConfig())
    local["applications"][0]["runtime_env"] = {"env_vars": {"TAGOPS_HOME": "/var/lib/tagops"}}
    cluster = serve_deploy_config(ServeConfig(num_replicas=2, ingress="proxy", require_key_for_predict=True))
    cluster["proxy_location"] = "EveryNode"
    cluster["http_options"]["host"] = "0.0.0.0"
    v2 = yaml.safe_dump(cluster, sort_keys=False)
    ray_env = "".join(
        f'                - name: {key}\n                  value: "{value}"\n'
        for key, value in RAY_SERVING_ENVIRONMENT.items()
    )
    service = (
        RAYSERVICE_HEADER.format(image=IMAGE)
        + "apiVersion: ray.io/v1\nkind: RayService\nmetadata:\n  name: tagops\nspec:\n  serveConfigV2: |\n"
        + "".join(f"    {line}\n" for line in v2.splitlines())
        + CLUSTER.format(ray_env=ray_env, image=IMAGE)
    )
    return {
        HERE / "serve-config.yaml": SERVE_CONFIG_HEADER + yaml.safe_dump(local, sort_keys=False),
        HERE / "rayservice.yaml": service,
    }


def main() -> None:
    """Write the files, or check them with ``--check``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="Fail if a file is not what would be written.")
    args = parser.parse_args()
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(path)
    if stale:
        sys.exit(f"out of date (run python deploy/render.py): {', '.join(map(str, stale))}")


if __name__ == "__main__":
    main()
