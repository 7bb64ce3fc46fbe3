"""The TaskQueue resource as pydantic models: the operator validates with them
and the CRD's OpenAPI schema is generated from them (``corral_operator.crd``).

Field names are snake_case here and camelCase in Kubernetes (``min_replicas`` is
``minReplicas``). Cross-field rules are written twice on purpose, as a CEL rule
for the API server (``x-kubernetes-validations``) and as a pydantic validator for
the operator; the unit tests check that both say the same.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from corral import defaults
from corral.keys import DEFAULT_PREFIX, PREFIX_PATTERN

GROUP = "corral.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TaskQueue"
PLURAL = "taskqueues"
SINGULAR = "taskqueue"
SHORT_NAMES = ("tq",)
CRD_NAME = f"{PLURAL}.{GROUP}"

# The same rule as corral.keys.validate_queue_name.
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
APP_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"
# The schemes corral.connection.connect accepts.
REDIS_URL_PATTERN = r"^(rediss?(\+(cluster|sentinel))?|unix)://"
# Env vars the operator sets on every worker container.
RESERVED_ENV = ("CORRAL_REDIS_URL", "CORRAL_REDIS_CA_CERTS", "CORRAL_PREFIX", "POD_NAME")
MAX_NAME_LENGTH = 63  # the TaskQueue name is used as a label value

# A Kubernetes resource quantity ("500m", "1.5", "1Gi", "2e3"), not negative. Checked
# here, and not only when the Deployment is written: Kubernetes refuses a malformed
# one with a message that does not name the field.
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
QUANTITY_MESSAGE = "must be a quantity that is not negative, such as 500m, 2 or 1Gi"


def _quantity(value: object) -> int | str:
    # One check for both types, so a bad value gets one error at its own path.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(QUANTITY_PATTERN, value):
        return value
    raise ValueError(QUANTITY_MESSAGE)


# Quantities are int-or-string in the API; pattern applies to strings, minimum to ints.
Quantity = Annotated[
    int | str,
    PlainValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN,
                    "minimum": 0}),
]
# Kubernetes objects the operator passes through to the pod spec untouched.
FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


def cel(rule: str, message: str) -> dict[str, str]:
    """A CEL validation rule for ``x-kubernetes-validations``."""
    return {"rule": rule, "message": message}


def validations(rules: list[dict[str, str]]) -> dict[str, JsonValue]:
    return {"x-kubernetes-validations": cast(list[JsonValue], rules)}


class _Model(BaseModel):
    # strict: no coercion ("3" is not an int, 1 is not a bool), the same types the
    # API server's schema checks, so both refuse the same specs.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        strict=True,
    )


# -- spec.redis -----------------------------------------------------------------------


class SecretKeyRef(_Model):
    """A key of a Secret in the TaskQueue's namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key in the Secret whose value is the Redis URL.")


class CASecretRef(_Model):
    """A key of a Secret in the TaskQueue's namespace holding PEM CA certificates."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(
        default="ca.crt", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key in the Secret whose value is the PEM CA bundle (default ca.crt, "
                    "as in cert-manager's and kubernetes.io/tls Secrets).")


REDIS_RULES = [
    cel("has(self.url) != has(self.urlSecretRef)",
        "set exactly one of redis.url and redis.urlSecretRef"),
    cel("!has(self.caSecretRef) || !has(self.url) || self.url.startsWith('rediss')",
        "redis.caSecretRef needs a rediss:// URL"),
]


class RedisSpec(_Model):
    """Where the queues live. A URL with a password belongs in a Secret."""

    model_config = ConfigDict(json_schema_extra=validations(REDIS_RULES))

    url: str | None = Field(
        default=None, max_length=2048, pattern=REDIS_URL_PATTERN,
        description="Redis URL (redis://, rediss://, unix://, redis+cluster://, "
                    "redis+sentinel://...), for URLs without secrets.")
    url_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the Redis URL; use it when the URL has a password.")
    prefix: str = Field(
        default=DEFAULT_PREFIX, max_length=50, pattern=PREFIX_PATTERN,
        description="Key prefix of the application in Redis (App(prefix=...) in its code; "
                    "the workers get it as CORRAL_PREFIX). TaskQueues of different "
                    "prefixes share a Redis, even queue names, without meeting.")
    ca_secret_ref: CASecretRef | None = Field(
        default=None,
        description="Secret key holding the CA certificates that a rediss:// server's "
                    "certificate is verified against. Mounted into the worker pods and "
                    "read by the operator. Verification is on whether it is set or not "
                    "(without it, the system's CAs are used).")

    @model_validator(mode="after")
    def _url_rules(self) -> RedisSpec:
        if (self.url is None) == (self.url_secret_ref is None):
            raise ValueError(REDIS_RULES[0]["message"])
        if self.ca_secret_ref is not None and self.url is not None \
                and not self.url.startswith("rediss"):
            raise ValueError(REDIS_RULES[1]["message"])
        return self


# -- spec.queues ----------------------------------------------------------------------


class QueueSpec(_Model):
    name: str = Field(pattern=QUEUE_NAME_PATTERN, max_length=100, description="Queue name.")
    weight: int = Field(
        default=1, ge=1, le=100,
        description="Share of the worker's task starts this queue gets when several have work.")


QUEUES_RULES = [cel("self.all(q, self.exists_one(p, p.name == q.name))",
                    "queue names must be unique")]

# -- spec.worker ----------------------------------------------------------------------


class EnvVar(_Model):
    name: str = Field(min_length=1, max_length=253, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: FreeForm | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef...).")


class Toleration(_Model):
    key: str | None = Field(
        default=None, description="Taint key; empty with Exists matches all taints.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects.")
    toleration_seconds: int | None = Field(
        default=None,
        description="For NoExecute: how long the pod stays bound after the taint appears.")


class LocalObjectReference(_Model):
    name: str = Field(min_length=1, max_length=253, description="Object name.")


class ResourceRequirements(_Model):
    limits: dict[str, Quantity] | None = Field(
        default=None, description="Resource limits, as quantities (500m, 2, 1Gi).")
    requests: dict[str, Quantity] | None = Field(
        default=None, description="Resource requests, as quantities (500m, 2, 1Gi).")


# Worker pods always carry requests and limits, so the scheduler and the cluster
# autoscaler can size nodes for them: these apply when spec.worker.resources is not
# set (set it, even to {}, to replace them as a whole). An idle worker process uses
# about 60 MiB; the limits leave room for the default 50 concurrent tasks.
DEFAULT_WORKER_RESOURCES = ResourceRequirements(
    requests={"cpu": "100m", "memory": "128Mi"},
    limits={"cpu": "1", "memory": "512Mi"},
)


WORKER_RULES = [
    cel("!has(self.env) || self.env.all(e, !(e.name in "
        f"[{', '.join(repr(name) for name in RESERVED_ENV)}]))",
        f"worker.env must not set {', '.join(RESERVED_ENV)}: the operator sets them"),
]


# -- node autoscaling: spec.worker.disruptionBudget, spec.disruption ----------------------

# maxUnavailable of a PodDisruptionBudget: a count, or a percentage of the pods.
PERCENT_PATTERN = r"^([0-9]|[1-9][0-9]|100)%$"


def _count_or_percent(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(PERCENT_PATTERN, value):
        return value
    raise ValueError("must be a count that is not negative or a percentage such as 25%")


CountOrPercent = Annotated[
    int | str,
    PlainValidator(_count_or_percent),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": PERCENT_PATTERN,
                    "minimum": 0}),
]


class DisruptionBudget(_Model):
    """A PodDisruptionBudget the operator keeps beside the Deployment."""

    max_unavailable: CountOrPercent = Field(
        description="Worker pods that may be unavailable at once (a count or a "
                    "percentage such as 25%).")


class TopologySpreadConstraint(_Model):
    """How worker pods spread over nodes or zones (a Kubernetes TopologySpreadConstraint)."""

    max_skew: int = Field(ge=1, description="Most pods one domain may have above another.")
    topology_key: str = Field(
        min_length=1, max_length=316,
        description="Node label that names a domain (kubernetes.io/hostname, "
                    "topology.kubernetes.io/zone).")
    when_unsatisfiable: Literal["DoNotSchedule", "ScheduleAnyway"] = Field(
        description="DoNotSchedule (a hard rule) or ScheduleAnyway (a preference).")
    label_selector: FreeForm = Field(
        description="Pods counted (a LabelSelector), such as matchLabels "
                    "{corral.dev/taskqueue: NAME} for this TaskQueue's worker pods.")
    match_label_keys: list[str] | None = Field(
        default=None, description="Pod label keys whose values also select the pods counted.")
    min_domains: int | None = Field(default=None, ge=1, description="Fewest eligible domains.")
    node_affinity_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether nodeSelector and affinity limit the domains.")
    node_taints_policy: Literal["Honor", "Ignore"] | None = Field(
        default=None, description="Whether node taints limit the domains.")


class DisruptionSpec(_Model):
    """Keeping node autoscalers from interrupting running tasks."""

    protect_busy_workers: bool = Field(
        default=True,
        description="Annotate each worker pod whose worker has tasks in flight with "
                    "karpenter.sh/do-not-disrupt and "
                    "cluster-autoscaler.kubernetes.io/safe-to-evict=false, so node "
                    "consolidation and scale-down leave it alone.")
    idle_seconds: int = Field(
        default=30, ge=0, le=86_400,
        description="How long a worker must have been idle before its pod loses the "
                    "annotations and may be evicted again.")


class WorkerSpec(_Model):
    """The worker pods: image, app and everything the pod spec needs."""

    model_config = ConfigDict(json_schema_extra=validations(WORKER_RULES))

    image: str = Field(
        min_length=1, max_length=1024,
        description="Container image with corral and the app installed.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy (Kubernetes default when unset).")
    app: str = Field(
        pattern=APP_PATTERN, max_length=512,
        description="The corral.App to serve, as MODULE:ATTR.")
    concurrency: int = Field(
        default=defaults.CONCURRENCY.default, ge=defaults.CONCURRENCY.min,
        le=defaults.CONCURRENCY.max, description="Tasks running at once per pod.")
    batch_size: int = Field(
        default=defaults.BATCH_SIZE.default, ge=defaults.BATCH_SIZE.min,
        le=defaults.BATCH_SIZE.max,
        description="Tasks claimed per round trip and prefetched per queue.")
    lease_seconds: int = Field(
        default=defaults.LEASE_S.default, ge=defaults.LEASE_S.min,
        le=defaults.LEASE_S.max,
        description="Lease per claimed task, renewed while it runs.")
    grace_seconds: int = Field(
        default=defaults.GRACE_S.default, ge=defaults.GRACE_S.min,
        le=defaults.GRACE_S.max,
        description="On SIGTERM, how long running tasks may finish. The pod's "
                    "terminationGracePeriodSeconds is this plus a margin.")
    log_level: defaults.LogLevel = Field(
        default=defaults.LOG_LEVEL, description="Worker log level.")
    metrics_port: int = Field(
        default=defaults.METRICS_PORT, ge=1024, le=65_535,
        description="Port of /metrics, /healthz and /readyz.")
    run_as_user: int = Field(
        default=65532, ge=1, description="Non-root user id the worker runs as.")
    resources: ResourceRequirements = Field(
        default=DEFAULT_WORKER_RESOURCES,
        json_schema_extra={"default": DEFAULT_WORKER_RESOURCES.model_dump(
            mode="json", by_alias=True, exclude_none=True)},
        description="CPU and memory requests and limits of the worker container. The "
                    "default gives the scheduler and the cluster autoscaler something to "
                    "size nodes by; a value (even {}) replaces it as a whole.")
    env: list[EnvVar] | None = Field(
        default=None, max_length=100, description="Extra environment variables.")
    env_from: list[FreeForm] | None = Field(
        default=None,
        description="Kubernetes EnvFromSource entries (configMapRef, secretRef).")
    node_selector: dict[str, str] | None = Field(
        default=None, description="Pod node selector.")
    tolerations: list[Toleration] | None = Field(default=None, description="Pod tolerations.")
    affinity: FreeForm | None = Field(
        default=None, description="Pod affinity (a Kubernetes Affinity).")
    topology_spread_constraints: list[TopologySpreadConstraint] | None = Field(
        default=None, max_length=10, description="Pod topology spread constraints.")
    service_account_name: str | None = Field(
        default=None, max_length=253,
        description="Service account of the worker pods. Only then is its API token "
                    "mounted: without it the pods run as the namespace's default service "
                    "account with automountServiceAccountToken false, since workers "
                    "talk only to Redis.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        default=None, description="Secrets for pulling the image.")
    priority_class_name: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Pod priority class.")
    pod_labels: dict[str, str] | None = Field(
        default=None, description="Extra labels on worker pods.")
    pod_annotations: dict[str, str] | None = Field(
        default=None, description="Extra annotations on worker pods.")

    # -- node autoscaling (Karpenter, the cluster-autoscaler) --
    disruption_budget: DisruptionBudget | None = Field(
        default=None,
        description="A PodDisruptionBudget for the worker pods (none when unset): how many "
                    "may be unavailable at once during voluntary disruptions such as node "
                    "drains and consolidation.")

    @model_validator(mode="after")
    def _reserved_env(self) -> WorkerSpec:
        if any(e.name in RESERVED_ENV for e in self.env or ()):
            raise ValueError(WORKER_RULES[0]["message"])
        return self


# -- spec.scaling ---------------------------------------------------------------------

SCALING_RULES = [cel("self.minReplicas <= self.maxReplicas",
                     "scaling.minReplicas must not be greater than scaling.maxReplicas")]


class ScalingSpec(_Model):
    """How the number of worker pods follows the queue."""

    model_config = ConfigDict(json_schema_extra=validations(SCALING_RULES))

    min_replicas: int = Field(
        default=0, ge=0, le=1_000, description="Fewest pods; 0 allows scale to zero.")
    max_replicas: int = Field(default=10, ge=1, le=1_000, description="Most pods.")
    target_backlog_per_replica: int = Field(
        default=100, ge=1, le=1_000_000,
        description="Tasks (waiting plus running) one pod should have: "
                    "desired = ceil((backlog + inFlight) / targetBacklogPerReplica).")
    activation_backlog: int = Field(
        default=1, ge=1, le=1_000_000,
        description="Tasks (waiting plus running) needed to go from 0 pods to 1.")
    poll_seconds: int = Field(
        default=5, ge=1, le=300, description="How often Redis is read.")
    scale_down_stabilization_seconds: int = Field(
        default=60, ge=0, le=3_600,
        description="Scale down only to the highest recommendation of this window.")
    cooldown_seconds: int = Field(
        default=300, ge=0, le=86_400,
        description="With minReplicas 0: how long the queues must be empty and idle "
                    "before the last pod goes.")
    paused: bool = Field(default=False, description="Hold the replica count where it is.")

    # -- busy pods --
    max_drain_seconds: int = Field(
        default=3_600, ge=0, le=604_800,
        description="A scale-down never removes a pod whose worker has tasks in flight: "
                    "the replica count stays at the number of busy pods for up to this "
                    "long, then the normal drain (graceSeconds) applies.")

    @model_validator(mode="after")
    def _min_le_max(self) -> ScalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(SCALING_RULES[0]["message"])
        return self


# -- the spec -------------------------------------------------------------------------


class TaskQueueSpec(_Model):
    """Desired state of a TaskQueue."""

    redis: RedisSpec = Field(description="The Redis the queues live in.")
    queues: list[QueueSpec] = Field(
        min_length=1, max_length=20, json_schema_extra=validations(QUEUES_RULES),
        description="Queues the workers serve, with weights.")
    worker: WorkerSpec = Field(description="The worker pods.")
    scaling: ScalingSpec = Field(
        default=ScalingSpec(),
        # The API server checks a default against the CEL rules as it stands, without
        # filling in nested defaults first, so the default must be complete.
        json_schema_extra={"default": ScalingSpec().model_dump(mode="json", by_alias=True)},
        description="Autoscaling of the worker Deployment.")
    # -- node autoscaling --
    disruption: DisruptionSpec = Field(
        default=DisruptionSpec(),
        json_schema_extra={"default": DisruptionSpec().model_dump(mode="json", by_alias=True)},
        description="Protection of busy worker pods from node autoscalers.")

    @model_validator(mode="after")
    def _unique_queues(self) -> TaskQueueSpec:
        names = [q.name for q in self.queues]
        if len(set(names)) != len(names):
            raise ValueError(QUEUES_RULES[0]["message"])
        return self

    @property
    def queue_names(self) -> list[str]:
        return [q.name for q in self.queues]


# -- status ---------------------------------------------------------------------------

_DATE_TIME: dict[str, JsonValue] = {"format": "date-time"}


class Condition(_Model):
    type: str = Field(description="Ready, RedisReachable or Scaling.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="One CamelCase word saying why.")
    message: str = Field(default="", description="Details for humans.")
    last_transition_time: str | None = Field(
        default=None, json_schema_extra=_DATE_TIME, description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, description="Spec generation it refers to.")


class TaskQueueStatus(_Model):
    """Observed state, written by the operator."""

    queues: str | None = Field(
        default=None, description="Queues and weights as the workers get them (for kubectl get).")
    backlog: int | None = Field(
        default=None, description="Tasks that could start now, over all queues.")
    in_flight: int | None = Field(
        default=None, description="Tasks claimed by workers, over all queues.")
    limited: int | None = Field(
        default=None,
        description="Tasks a rate or concurrency limit holds back, over all queues: not "
                    "in the backlog, and no reason to add replicas.")
    replicas: int | None = Field(
        default=None, description="Replicas of the worker Deployment.")
    ready_replicas: int | None = Field(default=None, description="Ready worker pods.")
    desired_replicas: int | None = Field(
        default=None, description="What the scaling policy asks for.")
    pending_replicas: int | None = Field(
        default=None,
        description="Worker pods the scheduler cannot place for lack of nodes (a node "
                    "autoscaler is being waited for).")
    last_scale_time: str | None = Field(
        default=None, json_schema_extra=_DATE_TIME,
        description="When the operator last changed the replica count.")
    observed_generation: int | None = Field(
        default=None, description="Last spec generation acted on.")
    conditions: list[Condition] | None = Field(
        default=None,
        json_schema_extra={"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["type"]},
        description="Ready, RedisReachable and Scaling.")


ROOT_RULES = [cel(f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                  f"metadata.name must be at most {MAX_NAME_LENGTH} characters: "
                  "it is used as a label value")]
