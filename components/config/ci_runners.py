"""The config of the CI runners (ARC) and the runner scope checks a team's runners share."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mlplane.config.scalars import ConfigKey, DnsLabel, Storage
from mlplane.config.blocks import _Model, Resources, resources


class GitHubAppCredentials(_Model):
    """A GitHub App installed on the organization or repository (recommended)."""

    app_id: int = Field(description="GitHub App id.", gt=0)
    installation_id: int = Field(description="Installation id of the app.", gt=0)
    private_key_key: ConfigKey = Field(description="Secret config key holding the app's PEM private key.")


#: What GitHub calls the visibility of a repository (REST API ``visibility``).
RepositoryVisibility = Literal["private", "internal", "public"]
RUNNER_GROUP_DOCS = "https://docs.github.com/en/actions/how-tos/manage-runners/self-hosted-runners/manage-access"


def runner_scope_problem(
    url: str | None, group: str | None, visibility: str, allow_public: bool
) -> str | None:
    """Why these runners could take jobs from repositories they are not meant for, or None.

    GitHub hands a job to any runner whose scope and labels match: runners registered with an
    organization (or enterprise) URL serve every repository their runner group admits, and the
    Default group admits all of the organization's repositories (forks' pull requests of public
    ones included). So: a repository URL, or an organization URL plus a dedicated runner group.
    mlplane cannot look the group's repository access or a repository's visibility up offline:
    the group's access is set in GitHub, the visibility is declared here (see
    docs/components/ci-runners.md, "Who can run jobs on the runners").
    """
    if url is None:
        return None
    parts = url.rstrip("/").split("/")[3:]
    enterprise = parts[0] == "enterprises"
    repository = len(parts) == 2 and not enterprise
    if not repository and group is None:
        scope = "an enterprise" if enterprise else "an organization"
        return (
            f"github_config_url '{url}' is {scope} URL and runner_group is not set: every repository "
            "in its Default runner group (forks' pull requests of public ones included) could run "
            "jobs on these runners. Allowed: a repository URL (https://github.com/<owner>/<repo>), or "
            "this URL plus runner_group: a group whose repository access (GitHub organization "
            f"settings > Actions > Runner groups; {RUNNER_GROUP_DOCS}) is limited to your repositories"
        )
    if repository and group is not None:
        return (
            f"runner_group '{group}' is set but github_config_url '{url}' is a repository URL: runner "
            "groups exist only for organizations and enterprises. Allowed: remove runner_group, or "
            "use the organization URL (https://github.com/<org>) with it"
        )
    if group is not None and group.strip().lower() == "default":
        return (
            f"runner_group '{group}' is the organization's Default group, which admits every "
            "repository by default. Allowed: a dedicated group whose repository access is limited "
            "to your repositories"
        )
    if visibility == "public" and not allow_public:
        return (
            "repository_visibility is 'public' and allow_public_repository is not set: anyone can "
            "open a pull request from a fork and, once a workflow run is approved, run code on these "
            "runners with their MLflow and registry credentials. Allowed: a private or internal "
            "repository, or allow_public_repository: true to accept that explicitly"
        )
    return None


class CiRunnersConfig(_Model):
    """GitHub Actions Runner Controller with one runner scale set."""

    github_config_url: str | None = Field(
        default=None,
        pattern=r"^https://[^\s/]+/[^\s/]+(/[^\s/]+)?/?$",
        description=(
            "Repository URL the runners register with, e.g. 'https://github.com/acme/models', or an "
            "organization URL ('https://github.com/acme') together with runner_group. Unset: runners are off."
        ),
    )
    github_app: GitHubAppCredentials | None = Field(
        default=None, description="Authenticate as a GitHub App (preferred over a token)."
    )
    github_token_key: ConfigKey | None = Field(
        default=None, description="Secret config key holding a personal access token (fine-grained)."
    )
    runner_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description=(
            "Runner group the scale set joins (ARC `runnerGroup`); required with an organization URL. "
            "Limit the group's repository access in GitHub (organization settings > Actions > Runner "
            "groups): mlplane cannot set or check it."
        ),
    )
    repository_visibility: RepositoryVisibility = Field(
        default="private",
        description=(
            "Visibility of the repository (or of the most visible repository the runner group "
            "admits), as declared here: mlplane cannot look it up. 'public' needs allow_public_repository."
        ),
    )
    allow_public_repository: bool = Field(
        default=False,
        description="Explicit opt-in to runners serving a public repository (fork pull requests can reach them).",
    )
    runner_labels: list[DnsLabel] = Field(
        default_factory=lambda: ["mlplane"],
        description="Name of the scale set; workflows select it with `runs-on: <first label>`.",
        min_length=1,
        max_length=1,
    )
    min_runners: int = Field(default=0, ge=0, description="Idle runners kept warm (0 scales to zero).")
    max_runners: int = Field(default=3, ge=1, le=100, description="Most runners at once.")
    container_mode: Literal["kubernetes-novolume", "kubernetes", "dind"] = Field(
        default="kubernetes-novolume",
        description=(
            "How job containers run: 'kubernetes-novolume' and 'kubernetes' run them as pods "
            "(no privilege); 'dind' adds a privileged Docker sidecar and needs "
            "allow_privileged_runners."
        ),
    )
    allow_privileged_runners: bool = Field(
        default=False,
        description="Explicit opt-out of Pod Security 'restricted' for the runner namespace (needed by 'dind').",
    )
    runner_resources: Resources = Field(
        default_factory=resources("250m", "512Mi", "2", "4Gi"),
        description="Requests and limits of each runner pod (counted when runners are busy).",
    )
    controller_resources: Resources = Field(
        default_factory=resources("20m", "64Mi", "250m", "256Mi"),
        description="Requests and limits of the ARC controller (and the scale set listener).",
    )
    job_resources: Resources = Field(
        default_factory=resources("100m", "256Mi", "2", "4Gi"),
        description=(
            "Requests and limits of what runs a job's steps next to a busy runner: the job pod "
            "in the 'kubernetes' modes, the Docker daemon sidecar in 'dind'."
        ),
    )
    work_volume_size: Storage = Field(
        default="5Gi",
        description=(
            "Size of each runner's work volume in container_mode 'kubernetes' (an ephemeral "
            "PersistentVolumeClaim from the default StorageClass, shared with the job pod)."
        ),
    )
    datasets_access: Literal["read-only", "read-write", "none"] = Field(
        default="read-only",
        description=(
            "What job pods (the 'kubernetes' modes) may do in the datasets bucket of a bundled "
            "object store: an S3 identity limited to that bucket, given to them as AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION and MLPLANE_BUCKET, and "
            "egress to the S3 port. 'read-only' (Read, List) is enough for `dvc pull`; 'read-write' "
            "lets every job on these runners also write and delete there (`dvc push`, and the "
            "inference logs the drift check reads); 'none': no identity, no S3 egress. No effect "
            "with external object storage (mlplane cannot create scoped keys there). With target "
            "'aws' no key: job pods run as service account 'ci-jobs', bound by EKS Pod Identity to "
            "a role with this access to the datasets bucket (and the push to the platform's ECR "
            "repositories), and get AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION and MLPLANE_BUCKET."
        ),
    )

    @property
    def enabled(self) -> bool:
        return self.github_config_url is not None and (
            self.github_app is not None or self.github_token_key is not None
        )

    @model_validator(mode="after")
    def _rules(self) -> CiRunnersConfig:
        if self.github_app is not None and self.github_token_key is not None:
            raise ValueError("set either 'github_app' or 'github_token_key', not both")
        has_credentials = self.github_app is not None or self.github_token_key is not None
        if has_credentials and self.github_config_url is None:
            raise ValueError("credentials are set but 'github_config_url' is not: set the org or repo URL")
        scope = runner_scope_problem(
            self.github_config_url, self.runner_group, self.repository_visibility, self.allow_public_repository
        )
        if scope:
            raise ValueError(scope)
        if self.min_runners > self.max_runners:
            raise ValueError(
                f"min_runners ({self.min_runners}) is above max_runners ({self.max_runners})"
            )
        if self.container_mode == "dind" and not self.allow_privileged_runners:
            raise ValueError(
                "container_mode 'dind' runs a privileged sidecar: set allow_privileged_runners: "
                "true to opt out of Pod Security 'restricted' explicitly, or use 'kubernetes-novolume'"
            )
        return self


#: Where a GitHub App for ARC is created (the recommended credential).
GITHUB_APP_DOCS = "https://docs.github.com/en/apps/creating-github-apps"


def how_to_enable(config: CiRunnersConfig) -> str:
    """The steps that turn the runners on, given what the config already has."""
    label = config.runner_labels[0]
    steps = ["CI runners are off. To run GitHub Actions jobs inside the platform:"]
    number = 1
    if config.github_config_url is None:
        steps += [
            f"{number}. Set the organization or repository the runners register with:",
            "     pulumi config set --path 'mlplane:platform.ci_runners.github_config_url' "
            "https://github.com/<org>[/<repo>]",
        ]
        number += 1
    steps += [
        f"{number}. Give ARC credentials, either a GitHub App (recommended; {GITHUB_APP_DOCS}) "
        "with Self-hosted runners read and write (organization) or Administration read and "
        "write (repository), installed on the organization or repository:",
        "     pulumi config set --path 'mlplane:platform.ci_runners.github_app.app_id' <app id>",
        "     pulumi config set --path 'mlplane:platform.ci_runners.github_app.installation_id' "
        "<installation id>",
        "     pulumi config set --path 'mlplane:platform.ci_runners.github_app.private_key_key' "
        "githubAppPrivateKey",
        "     cat <app>.private-key.pem | pulumi config set --secret mlplane:githubAppPrivateKey",
        "   or a fine-grained personal access token with the same permissions:",
        "     pulumi config set --path 'mlplane:platform.ci_runners.github_token_key' githubToken",
        "     pulumi config set --secret mlplane:githubToken <token>",
        f"{number + 1}. Run `pulumi up`, then use `runs-on: {label}` in workflows.",
    ]
    return "\n".join(steps)
