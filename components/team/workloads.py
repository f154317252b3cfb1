"""A team's workloads: its models behind the platform Gateway and its own CI runners."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import yaml

from mlplane.config import CiRunnersConfig
from mlplane.core import kube
from mlplane.services import ci_runners, routing, serving, team_access
from mlplane.services.prometheus_config import prometheus_internal_url
from mlplane.targets.local.registry import PULL_SECRET_NAME, PUSH_SECRET_NAME
from mlplane.team.names import RUNNER_ACCOUNT, RUNNER_RULES, S3_SECRET


class Workloads:
    """The Team's workloads: its served models and its CI runners."""

    def _serve(self) -> None:
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        assert self.mlflow_password is not None  # serving.models require 'tracking' (TeamConfig)
        # The port of the platform's Gateway URLs (its foundation's http_port: kind's mapped port).
        http_port = plat.cluster.kind.http_port if plat.target == "local" and plat.cluster.mode == "kind" else 80
        gateway = kube.GatewayRef(
            name=plat.name,
            namespace=f"{plat.name}-gateway",
            domain=cfg.domain(plat.routing.domain),
            http_port=http_port,
            proxy_namespace=plat.routing.proxy_namespace,
            listeners=routing.route_listeners(plat.routing),
        )
        args = serving.ServingArgs(
            config=cfg.serving.as_serving_config(),
            platform=self._team,
            gateway=gateway,
            tracking_uri=out.tracking_uri,
            tracking_username=cfg.identity,
            tracking_password=self.mlflow_password,
            extra_env=({"name": "MLFLOW_WORKSPACE", "value": cfg.identity},),
            # The platform stack puts the team's pull credentials (pull.<team>: its own
            # repositories only) in the serving namespace (Registry.team_credentials).
            image_pull_secrets=(({"name": PULL_SECRET_NAME},) if self._bundled_registry() else ()),
            # The MetricTemplates of progressive canaries query the platform Prometheus.
            prometheus_url=prometheus_internal_url(plat.name),
        )
        if args.config.auth.mode == "api-key":
            self.model_api_key = serving.api_key_secret(
                f"{self._name}-serving-api-keys", self.serving.name, self._labels(serving.API_KEYS_SECRET), self
            )
        # Logging, drift and progressive canaries (model_extras.py), each off unless a model sets it.
        inference, flagger = self._inference(), self._team_flagger()
        for model in cfg.serving.models:
            served = serving.ModelServer(
                self, f"{self._name}-serving", model, args, self.serving.name, None,
                self._mlflow_secrets["serving"], inference, flagger,
            ).build()
            self.models.append(served)
            self.model_urls[model.name] = served.url
        self._model_exporter(inference)

    # ------------------------------------------------------------------------------ runners

    def _runners(self) -> None:
        """The team's ARC controller, listener and runners in its runner namespace (created by the
        platform stack; no member Role there), job pods in the work namespace.

        ARC reads the GitHub credential in the namespace of the scale set's runners
        (actions-runner-controller secretresolver: the object's own namespace), so the runners
        stay next to it, out of the members' reach; the container hooks create each job pod in
        the work namespace (``ACTIONS_RUNNER_KUBERNETES_NAMESPACE``), where the team's MLflow and
        registry credentials are. See docs/components/ci-runners.md, "Team runners"."""
        cfg, plat, out = self._args.config, self._args.platform, self._args.outputs
        runners = cfg.ci_runners
        label = cfg.runner_label
        namespace = team_access.runners_namespace(self.work.name)
        ci_config = CiRunnersConfig(
            github_config_url=runners.github_config_url,
            github_app=runners.github_app,
            github_token_key=runners.github_token_key,
            runner_group=runners.runner_group,
            repository_visibility=runners.repository_visibility,
            allow_public_repository=runners.allow_public_repository,
            runner_labels=[label],
            min_runners=runners.min_runners,
            max_runners=runners.max_runners,
            container_mode=runners.container_mode,
            runner_resources=runners.runner_resources,
            controller_resources=runners.controller_resources,
            job_resources=runners.job_resources,
            work_volume_size=runners.work_volume_size,
        )
        bundled = self._bundled_registry()
        # On a platform whose store binds workloads (AWS): job pods run as the bound service
        # account (the team's bucket and ECR push, no key) and get where the bucket is as env.
        job_identity = self._workload_account(self.work.name, ci_runners.JOB_ACCOUNT)
        s3_location = None
        if job_identity is not None and cfg.uses("object_storage"):
            s3_location = {
                "AWS_ENDPOINT_URL_S3": out.s3_endpoint, "AWS_DEFAULT_REGION": out.s3_region,
                "MLPLANE_BUCKET": self._bucket_name,
            }
        ci_args = ci_runners.CiRunnersArgs(
            config=ci_config,
            platform=self._team,
            registry_pull_prefix=out.registry_pull_prefix,
            registry_push_url=out.registry_cluster_push_url,
            # Team runners cannot use 'dind' (team_config), the only mode that reads this.
            registry_insecure=plat.target == "local" and plat.registry.mode == "bundled",
            # The platform stack puts the team's push credential (push.<team>: its own
            # repositories) in the work namespace (Registry.team_credentials).
            registry_push_secret=PUSH_SECRET_NAME if bundled else None,
            job_namespace=self.work.name,
            # The team's own S3 identity (its bucket only; _object_storage), already in the work
            # namespace, which the work namespace's egress policy lets reach the S3 port.
            s3_secret=S3_SECRET if cfg.uses("object_storage") and job_identity is None else None,
            job_identity=job_identity,
            s3_location=s3_location,
            tracking_uri=out.tracking_uri,
            tracking_username=cfg.identity,
            tracking_password=self.mlflow_password or pulumi.Output.secret(""),
        )
        labels = self._labels("runners")
        inputs = self._runner_inputs(ci_args, namespace, labels)
        controller_chart = self._platform.chart("arc-controller")
        controller = k8s.helm.v4.Chart(
            f"{self._name}-runner-controller",
            chart=controller_chart.chart,
            version=controller_chart.version,
            name="arc",
            namespace=namespace,
            # Watches the runner namespace only (namespaced Roles, no ClusterRole); the CRDs are
            # the platform's, installed with its own runner controller.
            values=ci_runners.controller_values(ci_config, self._platform, namespace),
            skip_crds=True,
            opts=self._child(depends_on=inputs),
        )
        values = ci_runners.scale_set_values(ci_args, namespace)
        values["template"]["spec"]["serviceAccountName"] = RUNNER_ACCOUNT
        scale_set_chart = self._platform.chart("arc-scale-set")
        k8s.helm.v4.Chart(
            f"{self._name}-runner-scale-set",
            chart=scale_set_chart.chart,
            version=scale_set_chart.version,
            name=label,
            namespace=namespace,
            values=values,
            opts=self._child(depends_on=[controller, *inputs]),
        )
        self.runner_label = label
        self.runners_namespace = namespace

    def _bundled_registry(self) -> bool:
        """The team uses the platform's bundled registry (local target): its pull and push
        credentials are Secrets the platform stack writes (Registry.team_credentials)."""
        plat = self._args.platform
        return self._args.config.uses("registry") and plat.target == "local" and plat.registry.mode == "bundled"

    def _runner_inputs(
        self, args: ci_runners.CiRunnersArgs, namespace: str, labels: dict[str, str]
    ) -> list[pulumi.Resource]:
        """In the runner namespace: its network policies, the GitHub credential, the job pod
        template and the runners' service account; in the work namespace: that account's Role
        (what the container hooks do with job pods) and its binding."""
        runners = self._args.config.ci_runners
        # Nothing connects in; the controller, listener and runners call GitHub and the API server.
        k8s.networking.v1.NetworkPolicy(
            f"{self._name}-runner-deny-ingress",
            metadata={"name": "deny-ingress", "namespace": namespace, "labels": labels},
            spec={"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []},
            opts=self._child(),
        )
        kube.isolate_namespace(f"{self._name}-runner", namespace=namespace, labels=labels, parent=self)
        kube.egress_only_to(
            f"{self._name}-runner-egress", name="runner-egress", namespace=namespace, labels=labels,
            pods=None, rules=ci_runners.egress_rules(args, "controller"), parent=self,
        )
        if runners.github_app is not None:
            credentials: dict[str, pulumi.Input[str]] = {
                "github_app_id": str(runners.github_app.app_id),
                "github_app_installation_id": str(runners.github_app.installation_id),
                "github_app_private_key": pulumi.Output.secret(self._args.secret(runners.github_app.private_key_key)),
            }
        else:
            assert runners.github_token_key is not None  # enabled implies an app or a token
            credentials = {"github_token": pulumi.Output.secret(self._args.secret(runners.github_token_key))}
        github = k8s.core.v1.Secret(
            f"{self._name}-runner-github",
            metadata={"name": ci_runners.GITHUB_SECRET, "namespace": namespace, "labels": labels},
            type="Opaque",
            string_data=credentials,
            opts=self._child(),
        )
        template = pulumi.Output.from_input(ci_runners.job_pod_template(args))
        job_template = k8s.core.v1.ConfigMap(
            f"{self._name}-runner-job-template",
            metadata={"name": ci_runners.JOB_TEMPLATE, "namespace": namespace, "labels": labels},
            data={ci_runners.JOB_TEMPLATE_FILE: template.apply(lambda t: yaml.safe_dump(t, sort_keys=False))},
            opts=self._child(),
        )
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-runner-account",
            metadata={"name": RUNNER_ACCOUNT, "namespace": namespace, "labels": labels},
            automount_service_account_token=False,
            opts=self._child(),
        )
        role = k8s.rbac.v1.Role(
            f"{self._name}-runner-role",
            metadata={"name": RUNNER_ACCOUNT, "namespace": self.work.name, "labels": labels},
            rules=[dict(rule) for rule in RUNNER_RULES],
            opts=self._child(),
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{self._name}-runner-role-binding",
            metadata={"name": RUNNER_ACCOUNT, "namespace": self.work.name, "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": namespace}],
            opts=self._child(),
        )
        return [github, job_template, account, role, binding]
