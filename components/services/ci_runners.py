"""GitHub Actions runners inside the platform: the ARC controller and one runner scale set.

Off unless ``ci_runners.github_config_url`` and credentials are set; then jobs that say
``runs-on: <runner_labels[0]>`` run in ephemeral pods that reach MLflow and the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi_kubernetes as k8s
import yaml

from mlplane.backing.workload_identity import PodIdentity, service_account
from mlplane.core import kube
from mlplane.config import CiRunnersConfig, Resources
# Re-exported: the steps that turn the runners on live with their config (`validate` stays light).
from mlplane.config.ci_runners import GITHUB_APP_DOCS, how_to_enable  # noqa: F401
from mlplane.services.tracking import PORT as TRACKING_PORT

TYPE = "mlplane:ci:Runners"
#: UID of the `runner` user in the actions-runner image.
RUNNER_UID = 1001
#: Group of the Docker socket the dind sidecar creates (the runner user is in it).
DOCKER_GID = 123
#: UID of the distroless ARC controller and listener image (nonroot).
CONTROLLER_UID = 65532
#: Names of the objects the scale set chart and its pods refer to.
CONTROLLER_ACCOUNT = "arc-controller"
GITHUB_SECRET = "github-config"
TRACKING_SECRET = "mlflow-credentials"
JOB_TEMPLATE = "job-pod-template"
JOB_TEMPLATE_DIR = "/home/runner/pod-templates"
JOB_TEMPLATE_FILE = "job.yaml"
#: Where the runner keeps the checked-out workspace.
WORK_DIR = "/home/runner/_work"
RUNNER_COMMAND = ["/home/runner/run.sh"]
DOCKER_SOCKET = "unix:///var/run/docker.sock"
#: In 'kubernetes-novolume' mode the container hooks (actions/runner-container-hooks
#: packages/k8s/src/k8s/index.ts, createJobPod) give every job pod an init container 'fs-init'
#: (image $ACTIONS_RUNNER_IMAGE, `sudo mv /home/runner/externals/* /mnt/externals`, a security
#: context of runAsUser/runAsGroup 1001 only) that fills the emptyDir volume 'externals'
#: (utils.ts EXTERNALS_VOLUME_NAME), mounted at /__e in the job container. Pod Security
#: 'restricted' rejects that init container (no allowPrivilegeEscalation: false, capabilities
#: not dropped, sudo needs privilege escalation). The hooks merge a template's pod spec key by
#: key and replace `initContainers` whole (utils.ts mergePodSpecWithOptions), so the job pod
#: template supplies an equivalent, restricted 'fs-init' instead; see docs/components/ci-runners.md.
HOOK_INIT_CONTAINER = "fs-init"
HOOK_EXTERNALS_VOLUME = "externals"
HOOK_EXTERNALS_MOUNT = "/mnt/externals"
#: Where the actions-runner image keeps the runner's externals (node for JavaScript actions),
#: owned by the runner user (actions/runner images/Dockerfile: COPY --chown=runner:docker).
RUNNER_EXTERNALS = "/home/runner/externals"
KUBERNETES_MODES = ("kubernetes", "kubernetes-novolume")
#: Where jobs find the registry push credential: ``$DOCKER_CONFIG/config.json``, read by the
#: Docker CLI, BuildKit's buildctl and crane (docker/cli cli/config/config.go: "DOCKER_CONFIG";
#: go-containerregistry pkg/authn/keychain.go reads the same file), and ``REGISTRY_AUTH_FILE`` for
#: buildah, podman and skopeo (containers-auth.json(5)). The directory is a writable emptyDir
#: (buildx keeps its state under it); only ``config.json`` comes from the Secret.
DOCKER_CONFIG_DIR = "/mlplane/docker"
DOCKER_CONFIG_VOLUME = "docker-config"
REGISTRY_PUSH_VOLUME = "registry-push"
#: The Secret in the job pods' namespace with their S3 identity, one key per env var (the same
#: name and keys as a team's S3 Secret in its work namespace, mlplane.team.S3_SECRET).
S3_SECRET = "s3-credentials"
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "MLPLANE_BUCKET")
#: Where the bucket is, without keys: what job pods with a workload identity get as plain env.
S3_LOCATION_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "MLPLANE_BUCKET")
#: The service account job pods run as when they have a workload identity (a store that binds
#: workloads: S3 and ECR on AWS). The container hooks create each job pod from the job pod
#: template, and every key of the template's pod spec but ``containers`` and ``volumes`` replaces
#: the hooks' own (actions/runner-container-hooks packages/k8s/src/k8s/utils.ts,
#: mergePodSpecWithOptions: ``base[key] = value``; k8s/index.ts createPod sets no
#: serviceAccountName of its own), so ``serviceAccountName`` there is the job pod's.
JOB_ACCOUNT = "ci-jobs"


@dataclass(frozen=True)
class CiRunnersArgs:
    config: CiRunnersConfig
    platform: kube.Platform
    #: Prefix of image references pods pull from the platform registry.
    registry_pull_prefix: pulumi.Input[str]
    #: Where pods push images: the registry's in-cluster address (Registry.cluster_push_url).
    registry_push_url: pulumi.Input[str]
    #: MLflow tracking URI reachable from pods (the in-cluster Service URL).
    tracking_uri: pulumi.Input[str]
    tracking_username: pulumi.Input[str]
    tracking_password: pulumi.Input[str]
    #: The registry at ``registry_push_url`` speaks plain HTTP (the bundled one): in 'dind'
    #: mode dockerd is told so with ``--insecure-registry``. Never set for an HTTPS registry
    #: (dockerd would then also accept an invalid certificate from it).
    registry_insecure: bool = False
    #: A ``kubernetes.io/dockerconfigjson`` Secret with the registry push credential, in the
    #: namespace of the pods that run jobs' steps (job pods; runner pods in 'dind'): mounted as
    #: ``$DOCKER_CONFIG/config.json``. None: no credential (an external registry).
    registry_push_secret: str | None = None
    #: The egress rule from job pods to the registry (the bundled one's network and ports,
    #: mlplane.targets.local.registry.registry_egress). None: HTTPS anywhere covers an external registry.
    registry_egress: dict[str, Any] | None = None
    #: 'kubernetes-novolume' only: the namespace the container hooks create job pods in
    #: (``ACTIONS_RUNNER_KUBERNETES_NAMESPACE``), when not the runners' own. Team runners use it:
    #: runners stay next to the GitHub credential, jobs run in the team's work namespace.
    job_namespace: str | None = None
    #: The job pods' S3 identity, keyed by S3_ENV (the platform's datasets identity): CiRunners
    #: writes it to the Secret S3_SECRET in the runner namespace. None: no Secret is created.
    s3_credentials: Mapping[str, pulumi.Input[str]] | None = None
    #: The name of a Secret with the S3_ENV keys in the job pods' namespace, exposed to them as
    #: env vars ('kubernetes' modes): S3_SECRET with ``s3_credentials``, or a team's S3 Secret.
    s3_secret: str | None = None
    #: The egress rule from the runner namespace to that S3 endpoint (the bundled SeaweedFS's
    #: S3 port). None: an external endpoint over HTTPS is covered by the 443 rule.
    s3_egress: dict[str, Any] | None = None
    #: The job pods' workload identity (a role bound to :data:`JOB_ACCOUNT` in the job pods'
    #: namespace: the datasets bucket and the registry push on AWS), instead of keys: job pods
    #: run as its service account and may reach the node's credential agent. CiRunners creates
    #: the ServiceAccount in its runner namespace (a team creates its own in its work namespace).
    job_identity: PodIdentity | None = None
    #: With ``job_identity``: the bucket's location as plain env (keys S3_LOCATION_ENV), no keys.
    s3_location: Mapping[str, pulumi.Input[str]] | None = None


def _split_image(ref: str) -> tuple[str, str]:
    repository, tag = ref.rsplit(":", 1)
    return repository, tag


def _env(args: CiRunnersArgs) -> list[dict[str, Any]]:
    """What jobs need to reach MLflow and the registry (credentials from a Secret)."""
    return [
        {"name": "MLFLOW_TRACKING_URI", "value": args.tracking_uri},
        kube.secret_env("MLFLOW_TRACKING_USERNAME", TRACKING_SECRET, "username"),
        kube.secret_env("MLFLOW_TRACKING_PASSWORD", TRACKING_SECRET, "password"),
        {"name": "MLPLANE_REGISTRY", "value": args.registry_push_url},
        {"name": "MLPLANE_REGISTRY_PULL_PREFIX", "value": args.registry_pull_prefix},
    ]


def job_pod_template(args: CiRunnersArgs) -> dict[str, Any]:
    """Pod template the Kubernetes container hooks merge into every job pod.

    Job pods land in the runner namespace, so they must pass Pod Security 'restricted': they
    run as the runner user (who owns the workspace) with no privilege. Their root filesystem
    stays writable because job images install packages at run time. In 'kubernetes-novolume'
    mode the template also replaces the hooks' 'fs-init' init container (see HOOK_INIT_CONTAINER).
    """
    job: dict[str, Any] = {
        "name": "$job",
        "env": _env(args) + registry_env(args) + s3_env(args),
        "resources": kube.resources(args.config.job_resources),
        "securityContext": kube.container_security(read_only_root=False),
    }
    spec: dict[str, Any] = {
        "securityContext": kube.pod_security(RUNNER_UID, RUNNER_UID),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [job],
    }
    if args.registry_push_secret is not None:
        job["volumeMounts"] = registry_mounts()
        spec["volumes"] = registry_volumes(args.registry_push_secret)
    if args.job_identity is not None:
        # The hooks keep this key (see JOB_ACCOUNT); the Pod Identity webhook mounts its own
        # token, so no API token is mounted (automountServiceAccountToken stays false).
        spec["serviceAccountName"] = args.job_identity.service_account
    if args.config.container_mode == "kubernetes-novolume":
        spec["initContainers"] = [externals_init_container(args)]
    # Job pods on the serving group (the hooks keep nodeSelector and tolerations like
    # serviceAccountName: every key but containers and volumes).
    spec.update(args.platform.place("serving"))
    return {"spec": spec}


def registry_env(args: CiRunnersArgs) -> list[dict[str, Any]]:
    """DOCKER_CONFIG and REGISTRY_AUTH_FILE when jobs get the registry push credential."""
    if args.registry_push_secret is None:
        return []
    return [
        {"name": "DOCKER_CONFIG", "value": DOCKER_CONFIG_DIR},
        {"name": "REGISTRY_AUTH_FILE", "value": f"{DOCKER_CONFIG_DIR}/config.json"},
    ]


def s3_env(args: CiRunnersArgs) -> list[dict[str, Any]]:
    """The job pods' S3 identity, one env var per key of ``s3_secret`` (botocore, boto3, DVC and
    the AWS CLI read AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL_S3)."""
    if args.s3_location is not None:
        if sorted(args.s3_location) != sorted(S3_LOCATION_ENV):
            raise ValueError(f"s3_location needs exactly the keys {', '.join(S3_LOCATION_ENV)}")
        if args.job_identity is None or args.s3_secret is not None:
            raise ValueError("s3_location (no keys) goes with a job_identity and without an s3_secret")
        return [{"name": key, "value": args.s3_location[key]} for key in S3_LOCATION_ENV]
    if args.s3_secret is None:
        return []
    return [kube.secret_env(key, args.s3_secret, key) for key in S3_ENV]


def registry_mounts() -> list[dict[str, Any]]:
    return [
        {"name": DOCKER_CONFIG_VOLUME, "mountPath": DOCKER_CONFIG_DIR},
        {"name": REGISTRY_PUSH_VOLUME, "mountPath": f"{DOCKER_CONFIG_DIR}/config.json",
         "subPath": "config.json", "readOnly": True},
    ]


def registry_volumes(secret: str) -> list[dict[str, Any]]:
    return [
        {"name": DOCKER_CONFIG_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}},
        {"name": REGISTRY_PUSH_VOLUME,
         "secret": {"secretName": secret, "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}},
    ]


def externals_init_container(args: CiRunnersArgs) -> dict[str, Any]:
    """The hooks' 'fs-init', restricted: copies the runner's externals into the job pod's
    'externals' volume as the runner user (who owns them: no sudo needed)."""
    return {
        "name": HOOK_INIT_CONTAINER,
        "image": args.platform.image("actions-runner"),
        "imagePullPolicy": "Always",
        "command": ["sh", "-c", f"cp -R --preserve=mode,timestamps {RUNNER_EXTERNALS}/. {HOOK_EXTERNALS_MOUNT}/"],
        "resources": kube.resources(args.config.job_resources),
        "securityContext": {
            **kube.container_security(),
            "runAsUser": RUNNER_UID,
            "runAsGroup": RUNNER_UID,
        },
        "volumeMounts": [{"name": HOOK_EXTERNALS_VOLUME, "mountPath": HOOK_EXTERNALS_MOUNT}],
    }


def _runner_container(
    args: CiRunnersArgs, env: list[dict[str, Any]], mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    security = {
        **kube.container_security(read_only_root=False),
        "runAsUser": RUNNER_UID,
        "runAsGroup": RUNNER_UID,
    }
    return {
        "name": "runner",
        "image": args.platform.image("actions-runner"),
        "imagePullPolicy": "Always",
        "command": RUNNER_COMMAND,
        "resources": kube.resources(args.config.runner_resources),
        "securityContext": security,
        "env": env,
        "volumeMounts": mounts,
    }


def runner_pod_spec(args: CiRunnersArgs) -> dict[str, Any]:
    """``template.spec`` of the scale set: the runner pod for the configured container mode."""
    if args.config.container_mode == "dind":
        return _dind_pod_spec(args)
    template_mount = {"name": JOB_TEMPLATE, "mountPath": JOB_TEMPLATE_DIR, "readOnly": True}
    # Steps run in job pods, not here: the runner gets no MLflow or registry credential.
    hook_env = [
        {
            "name": "ACTIONS_RUNNER_CONTAINER_HOOK_TEMPLATE",
            "value": f"{JOB_TEMPLATE_DIR}/{JOB_TEMPLATE_FILE}",
        }
    ]
    if args.job_namespace is not None:
        if args.config.container_mode != "kubernetes-novolume":
            # The volume-mode hooks read the runner pod and share its work volume: same namespace.
            raise ValueError("job_namespace needs container_mode 'kubernetes-novolume'")
        # actions/runner-container-hooks packages/k8s/src/k8s/index.ts namespace(): this variable
        # first; the novolume hooks never read the runner pod itself.
        hook_env.append({"name": "ACTIONS_RUNNER_KUBERNETES_NAMESPACE", "value": args.job_namespace})
    return {
        "securityContext": kube.pod_security(RUNNER_UID, RUNNER_UID),
        # The container hooks create, exec into and delete the job pods through the API.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "containers": [_runner_container(args, hook_env, [template_mount])],
        "volumes": [{"name": JOB_TEMPLATE, "configMap": {"name": JOB_TEMPLATE}}],
    }


def _dockerd_args(args: CiRunnersArgs) -> list[pulumi.Input[str]]:
    """dockerd's arguments. A plain-HTTP registry must be named with --insecure-registry, or
    `docker push` fails with "server gave HTTP response to HTTPS client" (distribution
    docs/content/about/insecure.md: "add `--insecure-registry myregistrydomain.com:5000` to the
    daemon's arguments")."""
    daemon: list[pulumi.Input[str]] = ["dockerd", f"--host={DOCKER_SOCKET}", f"--group={DOCKER_GID}"]
    if args.registry_insecure:
        push = args.registry_push_url
        daemon.append(
            f"--insecure-registry={push}"
            if isinstance(push, str)
            else pulumi.Output.concat("--insecure-registry=", push)
        )
    return daemon


def _dind_pod_spec(args: CiRunnersArgs) -> dict[str, Any]:
    """Runner plus a privileged Docker daemon sidecar (what the chart's 'dind' mode builds),
    written out so the sidecar gets requests and limits."""
    runner_image = args.platform.image("actions-runner")
    externals = {
        "name": "init-dind-externals",
        "image": runner_image,
        "imagePullPolicy": "Always",
        "command": ["cp", "-r", "/home/runner/externals/.", "/home/runner/tmpDir/"],
        "resources": kube.resources(args.config.runner_resources),
        "securityContext": {**kube.container_security(), "runAsUser": RUNNER_UID},
        "volumeMounts": [{"name": "dind-externals", "mountPath": "/home/runner/tmpDir"}],
    }
    dind = {
        "name": "dind",
        "image": args.platform.image("docker-dind"),
        "imagePullPolicy": "Always",
        "args": _dockerd_args(args),
        # A native sidecar: started before the runner, stopped after it.
        "restartPolicy": "Always",
        "startupProbe": kube.exec_probe(["docker", "info"], period=5, failures=24),
        "resources": kube.resources(args.config.job_resources),
        "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False},
        "volumeMounts": [
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "dind-sock", "mountPath": "/var/run"},
            {"name": "dind-externals", "mountPath": "/home/runner/externals"},
        ],
    }
    docker_env = [
        *_env(args),
        {"name": "DOCKER_HOST", "value": DOCKER_SOCKET},
        {"name": "RUNNER_WAIT_FOR_DOCKER_IN_SECONDS", "value": "120"},
        *registry_env(args),
    ]
    mounts = [
        {"name": "work", "mountPath": WORK_DIR},
        {"name": "dind-sock", "mountPath": "/var/run"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "work", "emptyDir": {}},
        {"name": "dind-sock", "emptyDir": {}},
        {"name": "dind-externals", "emptyDir": {}},
    ]
    if args.registry_push_secret is not None:
        mounts += registry_mounts()
        volumes += registry_volumes(args.registry_push_secret)
    return {
        "securityContext": {
            "fsGroup": DOCKER_GID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "initContainers": [externals, dind],
        "containers": [_runner_container(args, docker_env, mounts)],
        "volumes": volumes,
    }


def _restricted_pod(uid: int, container: str, spec: Resources) -> dict[str, Any]:
    return {
        "spec": {
            "securityContext": kube.pod_security(uid),
            "containers": [
                {
                    "name": container,
                    "resources": kube.resources(spec),
                    "securityContext": kube.container_security(),
                }
            ],
        }
    }


def controller_values(
    config: CiRunnersConfig, platform: kube.Platform, runner_namespace: str
) -> dict[str, Any]:
    """Values for the ARC controller chart: pinned image, one namespace, restricted pod."""
    repository, tag = _split_image(platform.image("arc-controller"))
    return {
        "replicaCount": 1,
        "fullnameOverride": CONTROLLER_ACCOUNT,
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Always"},
        "serviceAccount": {"create": True, "name": CONTROLLER_ACCOUNT},
        "resources": kube.resources(config.controller_resources),
        "podSecurityContext": kube.pod_security(CONTROLLER_UID),
        "securityContext": kube.container_security(),
        "flags": {"logLevel": "info", "watchSingleNamespace": runner_namespace},
        # The controller chart's top-level nodeSelector (gha-runner-scale-set-controller values.yaml).
        **platform.place("system"),
    }


def scale_set_values(args: CiRunnersArgs, controller_namespace: str) -> dict[str, Any]:
    """Values for the runner scale set chart."""
    cfg = args.config
    values: dict[str, Any] = {
        "githubConfigUrl": cfg.github_config_url,
        "githubConfigSecret": GITHUB_SECRET,
        "runnerScaleSetName": cfg.runner_labels[0],
        "minRunners": cfg.min_runners,
        "maxRunners": cfg.max_runners,
        # Explicit, so the chart does not look the controller up in a live cluster.
        "controllerServiceAccount": {"namespace": controller_namespace, "name": CONTROLLER_ACCOUNT},
        "listenerTemplate": _restricted_pod(CONTROLLER_UID, "listener", cfg.controller_resources),
        # Runner pods (and dind's builds) on the serving group, the listener on the system group.
        "template": {"spec": {**runner_pod_spec(args), **args.platform.place("serving")}},
    }
    values["listenerTemplate"]["spec"].update(args.platform.place("system"))
    if cfg.runner_group is not None:
        values["runnerGroup"] = cfg.runner_group
    if cfg.container_mode in KUBERNETES_MODES:
        values["containerMode"] = {"type": cfg.container_mode}
    if cfg.container_mode == "kubernetes":
        values["containerMode"]["kubernetesModeWorkVolumeClaim"] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": cfg.work_volume_size}},
        }
    return values


def egress_rules(args: CiRunnersArgs, role: str) -> list[dict[str, Any]]:
    """Where the pods of the controller namespace (controller, listener) or of the runner
    namespace (runners, job pods, dind) may connect, besides DNS.

    GitHub (github.com, api.github.com, the Actions service, action and package downloads) has
    no fixed addresses a policy could name: HTTPS (443) to any address but the cloud metadata
    endpoint. The API server: the controller and listener always, runners in the 'kubernetes*'
    modes (the container hooks create job pods). Runners and jobs also reach MLflow, the
    bundled registry (``registry_egress``: its containers' network on the registry and token
    ports only, not a pod) and, with a datasets identity, the bundled SeaweedFS's S3 port
    (``s3_egress``; not its master, filer or volume ports).
    """
    rules = [kube.internet_egress(443)]
    if role == "controller" or args.config.container_mode in KUBERNETES_MODES:
        rules.append(kube.api_server_egress())
    if role == "runner":
        name = args.platform.name
        rules.append(
            {"to": [kube.pods_peer(f"{name}-tracking", args.platform.selector("tracking", "mlflow"))],
             "ports": kube.tcp(TRACKING_PORT)}
        )
        if args.registry_egress is not None:
            rules.append(args.registry_egress)
        if args.s3_egress is not None:
            rules.append(args.s3_egress)
        if args.job_identity is not None:
            rules.append(args.job_identity.egress())
    return rules


def chart_workloads(config: CiRunnersConfig) -> list[tuple[str, int, Resources]]:
    """Pods the ARC charts and controller run, which a render cannot show.

    The rows add up to the peak (every runner busy). Without the 'busy' rows they give the
    idle footprint: ``min_runners`` warm runners. Nothing runs while runners are off.
    """
    if not config.enabled:
        return []
    extra = config.max_runners - config.min_runners
    rows: list[tuple[str, int, Resources]] = [
        ("arc-controller", 1, config.controller_resources),
        ("arc-listener", 1, config.controller_resources),
        ("runner, idle (min_runners)", config.min_runners, config.runner_resources),
    ]
    if config.container_mode == "dind":
        rows += [
            ("dind sidecar, idle (min_runners)", config.min_runners, config.job_resources),
            ("runner, busy (up to max_runners)", extra, config.runner_resources),
            ("dind sidecar, busy (up to max_runners)", extra, config.job_resources),
        ]
    else:
        rows += [
            ("runner, busy (up to max_runners)", extra, config.runner_resources),
            ("job pod, busy (one per runner)", config.max_runners, config.job_resources),
        ]
    return rows


class CiRunners(pulumi.ComponentResource):
    """The Actions Runner Controller and one runner scale set, or nothing when runners are off.

    Outputs: ``controller_namespace`` and ``runner_namespace`` (None when off),
    ``scrape_targets`` and ``uis`` (both empty).
    """

    controller_namespace: pulumi.Output[str] | None
    runner_namespace: pulumi.Output[str] | None

    def __init__(self, name: str, args: CiRunnersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(TYPE, name, None, opts)
        self.scrape_targets: list[kube.ScrapeTarget] = []
        self.uis: list[kube.Ui] = []
        self.controller_namespace = None
        self.runner_namespace = None
        if args.config.enabled:
            self._enabled(name, args)
        self.register_outputs(
            {
                "controllerNamespace": self.controller_namespace,
                "runnerNamespace": self.runner_namespace,
            }
        )

    def _enabled(self, name: str, args: CiRunnersArgs) -> None:
        controller_ns, runner_ns = self._namespaces(name, args)
        inputs = self._runner_inputs(name, args, runner_ns)
        platform, cfg = args.platform, args.config
        controller_chart = platform.chart("arc-controller")
        controller = k8s.helm.v4.Chart(
            f"{name}-controller",
            chart=controller_chart.chart,
            version=controller_chart.version,
            name="arc",
            namespace=controller_ns.metadata.name,
            values=controller_values(cfg, platform, f"{platform.name}-ci-runners"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[controller_ns, runner_ns]),
        )
        scale_set_chart = platform.chart("arc-scale-set")
        k8s.helm.v4.Chart(
            f"{name}-scale-set",
            chart=scale_set_chart.chart,
            version=scale_set_chart.version,
            name=cfg.runner_labels[0],
            namespace=runner_ns.metadata.name,
            values=scale_set_values(args, f"{platform.name}-ci"),
            # The controller chart installs the CRDs; upgrade both charts together.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[controller, *inputs]),
        )
        self.controller_namespace = controller_ns.metadata.name
        self.runner_namespace = runner_ns.metadata.name

    def _namespaces(
        self, name: str, args: CiRunnersArgs
    ) -> tuple[k8s.core.v1.Namespace, k8s.core.v1.Namespace]:
        """The controller and runner namespaces, both closed to ingress."""
        platform = args.platform
        privileged = args.config.container_mode == "dind"
        controller_ns = kube.namespace(
            platform, f"{name}-controller-namespace", f"{platform.name}-ci", parent=self, component="ci"
        )
        runner_ns = kube.namespace(
            platform,
            f"{name}-runner-namespace",
            f"{platform.name}-ci-runners",
            parent=self,
            component="ci",
            enforce="privileged" if privileged else "restricted",
            reason=(
                "container_mode 'dind' runs a privileged Docker daemon in each runner pod "
                "(ci_runners.allow_privileged_runners: true)"
                if privileged
                else None
            ),
        )
        labels = platform.labels("ci", "runners")
        for role, namespace in (("controller", controller_ns), ("runner", runner_ns)):
            # Nothing connects to the controller, the listener, runners or job pods: they only
            # call out (GitHub, the API server, MLflow, the registry).
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{role}-deny-ingress",
                metadata={"name": "deny-ingress", "namespace": namespace.metadata.name, "labels": labels},
                spec={"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []},
                opts=pulumi.ResourceOptions(parent=self),
            )
            kube.isolate_namespace(f"{name}-{role}", namespace=namespace.metadata.name, labels=labels, parent=self)
            kube.egress_only_to(
                f"{name}-{role}-egress",
                name=f"{role}-egress",
                namespace=namespace.metadata.name,
                labels=labels,
                pods=None,
                rules=egress_rules(args, role),
                parent=self,
            )
        return controller_ns, runner_ns

    def _runner_inputs(
        self, name: str, args: CiRunnersArgs, runner_ns: k8s.core.v1.Namespace
    ) -> list[pulumi.Resource]:
        """What the scale set refers to: GitHub, MLflow and S3 credentials, the job pod template."""
        namespace = runner_ns.metadata.name
        labels = args.platform.labels("ci", "runners")
        inputs: list[pulumi.Resource] = [
            k8s.core.v1.Secret(
                f"{name}-github",
                metadata={"name": GITHUB_SECRET, "namespace": namespace, "labels": labels},
                type="Opaque",
                string_data=self._github_credentials(args),
                opts=pulumi.ResourceOptions(parent=self),
            ),
            k8s.core.v1.Secret(
                f"{name}-tracking",
                metadata={"name": TRACKING_SECRET, "namespace": namespace, "labels": labels},
                type="Opaque",
                string_data={
                    "username": args.tracking_username,
                    "password": pulumi.Output.secret(args.tracking_password),
                },
                opts=pulumi.ResourceOptions(parent=self),
            ),
        ]
        if args.s3_credentials is not None:
            if sorted(args.s3_credentials) != sorted(S3_ENV):
                raise ValueError(f"s3_credentials needs exactly the keys {', '.join(S3_ENV)}")
            inputs.append(
                k8s.core.v1.Secret(
                    f"{name}-s3",
                    metadata={"name": S3_SECRET, "namespace": namespace, "labels": labels},
                    type="Opaque",
                    string_data={
                        key: pulumi.Output.secret(value) if key == "AWS_SECRET_ACCESS_KEY" else value
                        for key, value in args.s3_credentials.items()
                    },
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        if args.job_identity is not None and args.config.container_mode in KUBERNETES_MODES:
            # Created after the identity's association: job pods (which cannot start before their
            # service account exists) always get the role's credentials.
            account = service_account(
                f"{name}-job-account", args.job_identity, labels, parent=self, namespace=namespace
            )
            inputs.append(account)
        if args.config.container_mode in KUBERNETES_MODES:
            template = pulumi.Output.from_input(job_pod_template(args))
            inputs.append(
                k8s.core.v1.ConfigMap(
                    f"{name}-job-template",
                    metadata={"name": JOB_TEMPLATE, "namespace": namespace, "labels": labels},
                    data={JOB_TEMPLATE_FILE: template.apply(lambda t: yaml.safe_dump(t, sort_keys=False))},
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        return inputs

    @staticmethod
    def _github_credentials(args: CiRunnersArgs) -> dict[str, pulumi.Input[str]]:
        cfg, secret = args.config, args.platform.secret
        if cfg.github_app is not None:
            app = cfg.github_app
            return {
                "github_app_id": str(app.app_id),
                "github_app_installation_id": str(app.installation_id),
                "github_app_private_key": pulumi.Output.secret(secret(app.private_key_key)),
            }
        assert cfg.github_token_key is not None  # enabled implies an app or a token
        return {"github_token": pulumi.Output.secret(secret(cfg.github_token_key))}
