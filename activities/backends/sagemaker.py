"""SageMaker hosting backend (boto3: sagemaker, sagemaker-runtime, application-autoscaling, s3).

Thermal mechanism on AWS (DESIGN 3), as implemented here:

* **COLD idle = no endpoint.** A real-time variant cannot sit at 0 instances (only inference
  components or async endpoints can, and SageMaker then *errors* while provisioning), so the
  workflow calls `delete_endpoint` after `scaleToZeroAfterMinutes` and `ensure_endpoint` on the
  next request, holding that request until InService. The orchestrator thereby owns the keep-alive
  to the minute instead of SageMaker's ~15 min AlarmLow + ~12 min instance-release tail.
* **WARM / HOT = capacity in place.** `set_capacity` sets DesiredInstanceCount with
  UpdateEndpointWeightsAndCapacities, then registers the variant with Application Auto Scaling
  (`sagemaker:variant:DesiredInstanceCount`, floor = the state's minimum, ceiling = maxInstances)
  and a target-tracking policy on SageMakerVariantInvocationsPerInstance. The floor is what keeps
  WARM/HOT from being scaled in by idleness.
* **Config changes** (image, instance type, environment, model data) get a new Model and
  EndpointConfig named `<endpoint>-<spec hash>` and UpdateEndpoint (blue/green, no downtime) with
  RetainAllVariantProperties, so the current instance count survives. The scalable target is
  deregistered first (an update that changes the instance type of a registered variant fails);
  the workflow's following `set_capacity` registers it again. The Models/EndpointConfigs of
  superseded configs are deleted once the endpoint is InService on its current one (by
  `set_capacity` and `ensure_endpoint`; `delete_endpoint` removes them all).
* **Async endpoints** (`spec.async_inference`): EndpointConfig with AsyncInferenceConfig
  (S3OutputPath, S3FailurePath); InvokeEndpointAsync with an S3 InputLocation; results read from
  S3 (NoSuchKey = not ready), with a target-tracking policy on ApproximateBacklogSizePerInstance.
  Their floor is 1 instance, as for real-time ones: scaling out from 0 would wait for the backlog
  to pass the target without a HasBacklogWithoutCapacity alarm, which this backend does not
  create (the local stand-in allows 0; the thermal workflows never ask for it).

Every call runs in a thread: boto3 is blocking, the worker's loop is not. Two pools of the
backend's own, not asyncio's default (min(32, CPUs + 4) threads, 6 on 2 cores, shared with DNS
lookups and file reads): inference (invocations up to 70 s each, S3 reads) and the control plane
(describe, create, scale), so slow invocations never queue a warm-up's DescribeEndpoint polls.
Each client's connection pool matches its pool's threads.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, get_args
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError

from activities.backends.base import (
    MANAGED_BY,
    TAG_CATEGORY,
    TAG_MANAGED_BY,
    TAG_MODEL,
    TAG_SPECIALTY,
    UPDATABLE_STATUSES,
    VARIANT_NAME,
    AccessDenied,
    AlreadyExists,
    AsyncInferenceFailed,
    AsyncInvocation,
    BackendError,
    EndpointFailed,
    EndpointInfo,
    EndpointNotFound,
    EndpointSpec,
    EndpointStatus,
    InvalidEndpointState,
    InvalidRequest,
    InvokeResult,
    ResourceNotFound,
    Unclassified,
    check_capacity,
    check_same_owner,
    check_sync_payload,
    classify_exception,
    fit_name,
)

log = logging.getLogger(__name__)

_KNOWN_STATUSES = frozenset(get_args(EndpointStatus))
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Threads (and HTTP connections) per pool: invocations wait on models, up to the worker's
# concurrent activities that invoke at once; control-plane calls are short.
INFERENCE_THREADS = 64
CONTROL_THREADS = 16
_RES_BASE = 54  # 63 minus "-" and the 8-char spec hash
# Page bounds of list calls (100 items a page). Tags: at most 50 user tags plus AWS's `aws:*`
# ones fit one page; 10 is far past any real resource. Lists: 10,000 endpoints/configs/models.
MAX_TAG_PAGES = 10
MAX_LIST_PAGES = 100


def resource_base(endpoint: str) -> str:
    """Prefix of this endpoint's Model/EndpointConfig names, unique per endpoint."""
    return fit_name(endpoint, _RES_BASE)


def resource_name(endpoint: str, config_hash: str) -> str:
    return f"{resource_base(endpoint)}-{config_hash}"


def _resource_pattern(endpoint: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(resource_base(endpoint))}-[0-9a-f]{{8}}$")


def scalable_resource_id(endpoint: str) -> str:
    return f"endpoint/{endpoint}/variant/{VARIANT_NAME}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidRequest(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class SageMakerBackend:
    kind = "sagemaker"

    def __init__(
        self,
        sagemaker_client: Any,
        runtime_client: Any,
        autoscaling_client: Any,
        s3_client: Any,
        execution_role_arn: str | None = None,
        *,
        async_output_s3_uri: str | None = None,
        target_invocations_per_instance: float = 70.0,
        target_backlog_per_instance: float = 5.0,
        scale_in_cooldown_s: int = 300,
        scale_out_cooldown_s: int = 60,
    ) -> None:
        self.sm = sagemaker_client
        self.runtime = runtime_client
        self.autoscaling = autoscaling_client
        self.s3 = s3_client
        self.execution_role_arn = execution_role_arn
        self.async_output_s3_uri = async_output_s3_uri
        self.target_invocations = target_invocations_per_instance
        self.target_backlog = target_backlog_per_instance
        self.scale_in_cooldown = scale_in_cooldown_s
        self.scale_out_cooldown = scale_out_cooldown_s
        # endpoint name -> (CreationTime, tags): one ListTags per endpoint incarnation
        self._tag_cache: dict[str, tuple[Any, dict[str, str]]] = {}
        self._inference_pool = ThreadPoolExecutor(INFERENCE_THREADS, "sagemaker-inference")
        self._control_pool = ThreadPoolExecutor(CONTROL_THREADS, "sagemaker-control")

    @classmethod
    def from_settings(
        cls,
        region: str,
        role_arn: str | None,
        async_output_s3_uri: str | None = None,
        **kwargs: Any,
    ) -> SageMakerBackend:
        """Real boto3 clients; credentials from the standard AWS chain."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(region_name=region)

        # Control plane: a few quick in-client retries; Temporal's retry policy owns the rest.
        def config(attempts: int, read_timeout: int, connections: int) -> Config:
            return Config(
                retries={"mode": "standard", "total_max_attempts": attempts},
                read_timeout=read_timeout,
                max_pool_connections=connections,
            )

        control = config(3, 60, CONTROL_THREADS)
        # Invocations: no hidden retries (Temporal decides), real-time limit is 60 s.
        runtime = config(1, 70, INFERENCE_THREADS)
        s3 = config(3, 60, INFERENCE_THREADS)  # async results: read on the inference pool
        return cls(
            session.client("sagemaker", config=control),
            session.client("sagemaker-runtime", config=runtime),
            session.client("application-autoscaling", config=control),
            session.client("s3", config=s3),
            role_arn,
            async_output_s3_uri=async_output_s3_uri,
            **kwargs,
        )

    async def aclose(self) -> None:
        """Stop the thread pools (the worker calls it on shutdown); calls under way finish."""
        for pool in (self._inference_pool, self._control_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[[], Any], *, inference: bool = False) -> Any:
        pool = self._inference_pool if inference else self._control_pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn)
        except (ClientError, BotoCoreError) as exc:
            err = classify_exception(exc)
            assert err is not None
            raise err from exc

    async def _call(self, client: Any, op: str, **params: Any) -> dict[str, Any]:
        inference = client is self.runtime or client is self.s3
        return await self._run(lambda: getattr(client, op)(**params), inference=inference)

    async def _call_tolerating_missing(self, client: Any, op: str, **params: Any) -> bool:
        """True if the call ran, False if its target was already gone (idempotent deletes)."""
        try:
            await self._call(client, op, **params)
        except ResourceNotFound:
            return False
        return True

    async def _describe_raw(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self.sm, "describe_endpoint", EndpointName=name)
        except ResourceNotFound:  # SageMaker: ValidationException "Could not find endpoint"
            return None

    @staticmethod
    def _info(raw: dict[str, Any], model_id: str | None) -> EndpointInfo:
        variants = raw.get("ProductionVariants") or []
        variant = next((v for v in variants if v.get("VariantName") == VARIANT_NAME), None)
        variant = variant or (variants[0] if variants else {})
        current = int(variant.get("CurrentInstanceCount", 0) or 0)
        status = raw.get("EndpointStatus", "OutOfService")
        message = None
        if status not in _KNOWN_STATUSES:  # a status newer than this code: not invokable
            message = f"unknown SageMaker status {status}"
            status = "OutOfService"
        return EndpointInfo(
            endpoint_name=raw["EndpointName"],
            model_id=model_id,
            status=status,
            instance_count=current,
            desired_instance_count=int(variant.get("DesiredInstanceCount", current) or 0),
            failure_reason=raw.get("FailureReason"),
            created_at=raw.get("CreationTime"),
            async_inference="AsyncInferenceConfig" in raw,
            config_name=raw.get("EndpointConfigName"),
            status_message=message,
        )

    async def _tags_of(self, raw: dict[str, Any]) -> dict[str, str]:
        """DescribeEndpoint has no tags: ListTags once per endpoint incarnation (name +
        CreationTime), so a deleted and recreated endpoint never shows its predecessor's tags."""
        arn, name, created = raw.get("EndpointArn"), raw["EndpointName"], raw.get("CreationTime")
        if not arn:
            return {}
        cached = self._tag_cache.get(name)
        if cached is not None and created is not None and cached[0] == created:
            return cached[1]
        # Every page: our ownership tags may follow AWS's own `aws:*` ones (not in the 50-tag
        # limit). Cached only once complete; a NotFound mid-way reaches `_described` as one.
        items = await self._paged(
            "list_tags", "Tags", {"ResourceArn": arn, "MaxResults": 100}, MAX_TAG_PAGES
        )
        tags = {t["Key"]: t["Value"] for t in items}
        self._tag_cache[name] = (created, tags)
        return tags

    async def _described(self, name: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """DescribeEndpoint and the endpoint's tags; None: no such endpoint, also one whose
        deletion ended between the two calls (ListTags then answers a ValidationException of
        undocumented wording: a describe again tells)."""
        raw = await self._describe_raw(name)
        if raw is None:
            return None
        try:
            return raw, await self._tags_of(raw)
        except (ResourceNotFound, InvalidRequest):
            if await self._describe_raw(name) is None:
                return None
            raise

    async def endpoint_tags(self, name: str) -> dict[str, str] | None:
        """The endpoint's tags (None: no such endpoint); the reconcile decides ownership by them.
        Describes afresh, so tags of a recreated endpoint are read again."""
        described = await self._described(name)
        return None if described is None else dict(described[1])

    # ------------------------------------------------------------------ lifecycle

    def _effective(self, spec: EndpointSpec) -> EndpointSpec:
        """The spec with backend defaults filled in (they are part of the config hash)."""
        role = spec.execution_role_arn or self.execution_role_arn
        if not role:
            raise InvalidRequest("no execution role (RADIANT_SAGEMAKER_EXECUTION_ROLE_ARN)")
        out = spec.async_output_s3_uri or self.async_output_s3_uri
        if spec.async_inference and not out:
            raise InvalidRequest("async inference needs RADIANT_ASYNC_OUTPUT_S3_URI")
        return spec.model_copy(update={"execution_role_arn": role, "async_output_s3_uri": out})

    @staticmethod
    def _tags(spec: EndpointSpec) -> list[dict[str, str]]:
        tags = {**spec.tags, TAG_MODEL: spec.model_id, TAG_MANAGED_BY: MANAGED_BY}
        if spec.model_category:
            tags[TAG_CATEGORY] = spec.model_category
        if spec.model_specialty:
            tags[TAG_SPECIALTY] = spec.model_specialty
        return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]

    async def _create_model_and_config(self, spec: EndpointSpec, name: str) -> None:
        """Model + EndpointConfig named `name`; "already exists" is success (a retried call)."""
        container: dict[str, Any] = {"Image": spec.image, "Environment": spec.environment}
        if spec.model_data_url:
            container["ModelDataUrl"] = spec.model_data_url
        tags = self._tags(spec)
        await self._create_tolerating_exists(
            "create_model",
            ModelName=name,
            PrimaryContainer=container,
            ExecutionRoleArn=spec.execution_role_arn,
            Tags=tags,
        )
        variant: dict[str, Any] = {
            "VariantName": VARIANT_NAME,
            "ModelName": name,
            "InstanceType": spec.instance_type,
            "InitialInstanceCount": max(1, spec.instance_count),  # API minimum is 1
            "InitialVariantWeight": 1.0,
        }
        if timeout := spec.container_startup_timeout_s:
            variant["ContainerStartupHealthCheckTimeoutInSeconds"] = timeout
        params: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [variant]}
        if spec.async_inference:
            out = (spec.async_output_s3_uri or "").rstrip("/")
            params["AsyncInferenceConfig"] = {
                "OutputConfig": {"S3OutputPath": f"{out}/output", "S3FailurePath": f"{out}/failure"}
            }
        await self._create_tolerating_exists("create_endpoint_config", **params, Tags=tags)

    async def _create_tolerating_exists(self, op: str, **params: Any) -> None:
        try:
            await self._call(self.sm, op, **params)
        except AlreadyExists:
            log.info("%s: already exists (a retried call)", op)

    async def ensure_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        spec = self._effective(spec)
        name = spec.endpoint_name
        config = resource_name(name, spec.config_hash())
        raw = await self._describe_raw(name)
        if raw is None:
            return await self._create(spec, config)
        status = raw.get("EndpointStatus")
        if status == "Deleting":  # a retry after the deletion finishes creates it afresh
            raise InvalidEndpointState(f"endpoint {name} is Deleting; ensure again once it is gone")
        # After Deleting: a name another owner is giving up is free once the delete finishes.
        check_same_owner(spec, await self._tags_of(raw))
        if status == "Failed":
            reason = raw.get("FailureReason")
            raise EndpointFailed(f"endpoint {name} is Failed: {reason}", failure_reason=reason)
        if raw.get("EndpointConfigName") == config:
            await self._prune_superseded(raw)
            return self._info(raw, spec.model_id)  # already there: idempotent
        if (raw.get("PendingDeploymentSummary") or {}).get("EndpointConfigName") == config:
            # A retry of a try whose UpdateEndpoint was accepted (EndpointConfigName names the
            # old config until the update ends): return that update; the caller's poll for
            # InService on `config` reports a rollback, which refusing until InService would
            # answer with the same failing UpdateEndpoint again.
            info = self._info(raw, spec.model_id)
            return info.model_copy(update={"config_name": config})
        # UpdateRollbackFailed serves a mix of two configs and waits for a new UpdateEndpoint
        # (AWS: "update your endpoint again"); waiting would wait forever.
        if status not in UPDATABLE_STATUSES and status != "UpdateRollbackFailed":
            raise InvalidEndpointState(f"endpoint {name} is {status}; config change must wait")
        log.info("endpoint %s: config %s -> %s", name, raw.get("EndpointConfigName"), config)
        await self._prune_superseded(raw, config)  # now: InService on the old config
        await self._create_model_and_config(spec, config)
        await self._deregister(name)
        try:
            await self._call(
                self.sm,
                "update_endpoint",
                EndpointName=name,
                EndpointConfigName=config,
                RetainAllVariantProperties=True,
            )
        except BackendError as err:
            if not err.retryable:  # refused; a timeout may have been accepted: the retry tells
                await self._reregister_after_refused_update(name, spec)
            raise
        info = self._info(raw, spec.model_id)
        return info.model_copy(update={"status": "Updating", "config_name": config})

    async def _reregister_after_refused_update(self, name: str, spec: EndpointSpec) -> None:
        """UpdateEndpoint was refused (e.g. ResourceLimitExceeded: blue/green needs both fleets
        at once): the old fleet serves on, so it gets its autoscaling back, or it would serve
        with none until the next count change. Best effort: the refusal is what gets raised."""
        if spec.min_instances < 1:
            return  # no floor to register (set_capacity refuses one of 0 as well)
        try:
            await self._register_autoscaling(
                name, spec.min_instances, spec.max_instances, spec.async_inference
            )
        except BackendError as err:
            log.warning("endpoint %s: autoscaling not registered again: %s", name, err.message)

    async def _create(self, spec: EndpointSpec, config: str) -> EndpointInfo:
        name = spec.endpoint_name
        log.info("endpoint %s: creating (%s on %s)", name, spec.model_id, spec.instance_type)
        await self._create_model_and_config(spec, config)
        try:
            await self._call(
                self.sm,
                "create_endpoint",
                EndpointName=name,
                EndpointConfigName=config,
                Tags=self._tags(spec),
            )
        except AlreadyExists:
            raw = await self._describe_raw(name)  # another worker won the race
            if raw is None:  # or the name was still Deleting and is free now: create again
                raise InvalidEndpointState(
                    f"endpoint {name} was being deleted when it was created; create it again"
                ) from None
            if raw.get("EndpointStatus") == "Deleting":  # the name is not free yet
                raise InvalidEndpointState(
                    f"endpoint {name} is Deleting; ensure again once it is gone"
                ) from None
            check_same_owner(spec, await self._tags_of(raw))
            return self._info(raw, spec.model_id)
        return EndpointInfo(
            endpoint_name=name,
            model_id=spec.model_id,
            status="Creating",
            instance_count=0,
            desired_instance_count=max(1, spec.instance_count),
            async_inference=spec.async_inference,
            config_name=config,
        )

    async def describe_endpoint(self, name: str) -> EndpointInfo | None:
        described = await self._described(name)
        if described is None:
            return None
        raw, tags = described
        return self._info(raw, tags.get(TAG_MODEL)).model_copy(update={"tags": dict(tags)})

    async def set_capacity(
        self, name: str, instance_count: int, min_instances: int, max_instances: int
    ) -> EndpointInfo:
        raw = await self._describe_raw(name)
        if raw is None:
            raise EndpointNotFound(f"endpoint {name} does not exist")
        status = raw.get("EndpointStatus")
        if status == "Failed":
            reason = raw.get("FailureReason")
            raise EndpointFailed(f"endpoint {name} is Failed: {reason}", failure_reason=reason)
        info = self._info(raw, None)
        desired = check_capacity(
            instance_count, min_instances, max_instances, async_inference=info.async_inference
        )
        # A retry of a call whose count change SageMaker accepted (Updating to this count for
        # minutes) but whose autoscaling step failed: resume at that step, or every retry
        # would be refused until InService and the change reported failed although it runs.
        # (PendingDeploymentSummary: a config update is under way instead; it waits for that.)
        resumed = (
            status == "Updating"
            and "PendingDeploymentSummary" not in raw
            and info.desired_instance_count == desired > 0
        )
        if status not in UPDATABLE_STATUSES and not resumed:
            raise InvalidEndpointState(f"endpoint {name} is {status}; only InService can scale")
        if min_instances < 1:
            # An async variant at 0 scales out again only once its backlog passes the target,
            # unless a HasBacklogWithoutCapacity alarm and step policy (not created here) say
            # so (AWS, "Autoscale an asynchronous endpoint"). COLD deletes the endpoint instead.
            raise InvalidRequest(
                f"endpoint {name}: a floor of 0 instances is not supported on SageMaker; "
                "scale a COLD model to zero with delete_endpoint"
            )
        if desired != info.desired_instance_count:
            await self._call(
                self.sm,
                "update_endpoint_weights_and_capacities",
                EndpointName=name,
                DesiredWeightsAndCapacities=[
                    {"VariantName": VARIANT_NAME, "DesiredInstanceCount": desired}
                ],
            )
            info = info.model_copy(update={"status": "Updating", "desired_instance_count": desired})
        await self._register_autoscaling(name, min_instances, max_instances, info.async_inference)
        if not resumed:  # `raw` was InService: a capacity change deploys no other config
            await self._prune_superseded(raw)
        return info

    async def _register_autoscaling(
        self, name: str, min_instances: int, max_instances: int, is_async: bool
    ) -> None:
        target = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": scalable_resource_id(name),
            "ScalableDimension": SCALABLE_DIMENSION,
        }
        await self._call(
            self.autoscaling,
            "register_scalable_target",
            **target,
            MinCapacity=min_instances,
            MaxCapacity=max_instances,
        )
        policy: dict[str, Any] = {
            "ScaleInCooldown": self.scale_in_cooldown,
            "ScaleOutCooldown": self.scale_out_cooldown,
        }
        if is_async:  # queue depth, not invocations, measures load on an async endpoint
            policy["TargetValue"] = self.target_backlog
            policy["CustomizedMetricSpecification"] = {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": name}],
                "Statistic": "Average",
            }
        else:
            policy["TargetValue"] = self.target_invocations
            policy["PredefinedMetricSpecification"] = {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            }
        try:
            await self._call(
                self.autoscaling,
                "put_scaling_policy",
                PolicyName=f"{name}-target-tracking",
                PolicyType="TargetTrackingScaling",
                TargetTrackingScalingPolicyConfiguration=policy,
                **target,
            )
        except ResourceNotFound as err:
            # The target registered a moment ago may not be visible yet (Application Auto
            # Scaling is eventually consistent): retry, never "the endpoint vanished".
            raise InvalidEndpointState(
                f"scalable target of {name} not visible yet after registering it: {err.message}",
                aws_code=err.aws_code,
                http_status=err.http_status,
            ) from err

    async def _deregister(self, name: str) -> None:
        await self._call_tolerating_missing(
            self.autoscaling,
            "deregister_scalable_target",
            ServiceNamespace="sagemaker",
            ResourceId=scalable_resource_id(name),
            ScalableDimension=SCALABLE_DIMENSION,
        )

    async def delete_endpoint(self, name: str) -> None:
        """Scalable target, endpoint, then every config and model of this endpoint (also those
        left by earlier UpdateEndpoints). Each "not found" is success, so a retry finishes."""
        await self._deregister(name)
        if await self._call_tolerating_missing(self.sm, "delete_endpoint", EndpointName=name):
            log.info("endpoint %s: deleting", name)
        await self._delete_configs_and_models(name)

    async def _delete_configs_and_models(
        self, name: str, keep: frozenset[str] = frozenset()
    ) -> list[str]:
        """Every EndpointConfig, then every Model, of endpoint `name` except those named in
        `keep` (a config and its model share one name, `resource_name`). "Not found" is
        success, so a retry finishes. Returns the names of the configs deleted."""
        pattern = _resource_pattern(name)

        def doomed(names: list[str]) -> list[str]:
            return [n for n in names if pattern.match(n) and n not in keep]

        configs = await self._list_names(
            "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", name
        )
        deleted: list[str] = []
        for config in doomed(configs):
            if await self._call_tolerating_missing(
                self.sm, "delete_endpoint_config", EndpointConfigName=config
            ):
                deleted.append(config)
        models = await self._list_names("list_models", "Models", "ModelName", name)
        for model in doomed(models):
            await self._call_tolerating_missing(self.sm, "delete_model", ModelName=model)
        return deleted

    async def _prune_superseded(self, raw: dict[str, Any], *keep: str) -> None:
        """Delete the Models/EndpointConfigs that earlier UpdateEndpoints left behind, once that
        is safe: the endpoint (as `raw` describes it) is InService on its current config. While
        Updating the old config still serves, in UpdateRollbackFailed both may: nothing then.
        Keeps the current config and its model, and `keep` (a config about to be deployed)."""
        name, current = raw["EndpointName"], raw.get("EndpointConfigName")
        if raw.get("EndpointStatus") != "InService" or not current:
            return
        if not _resource_pattern(name).match(current):
            return  # not named by resource_name: which model it serves is unknown
        try:
            deleted = await self._delete_configs_and_models(name, frozenset({current, *keep}))
        except BackendError as err:
            # Housekeeping never fails the call it rides on, retryable error or not: raising
            # would have the activity retry (and the workflow judge) a capacity change that
            # already went through, or hold up a config update. botocore has already retried
            # throttling; what is left goes at the next prune or at delete_endpoint.
            log.warning("endpoint %s: pruning superseded configs failed: %s", name, err)
            return
        if deleted:
            log.info("endpoint %s: deleted superseded configs %s", name, ", ".join(deleted))

    async def _paged(
        self, op: str, key: str, params: dict[str, Any], max_pages: int | None = None
    ) -> list[dict[str, Any]]:
        """Items `key` of every page of SageMaker list call `op`, following NextToken. Stops
        with an error after `max_pages`: a partial list would pass for a complete one (a
        missed owner tag, config or endpoint), and a NextToken that never ends loops forever."""
        max_pages = max_pages or MAX_LIST_PAGES
        items: list[dict[str, Any]] = []
        params = dict(params)
        for _ in range(max_pages):
            resp = await self._call(self.sm, op, **params)
            items += resp.get(key, [])
            if not resp.get("NextToken"):
                return items
            params["NextToken"] = resp["NextToken"]
        raise Unclassified(
            f"{op} {params.get('ResourceArn') or params.get('NameContains') or ''}: still more "
            f"results after {max_pages} pages ({len(items)} items); the result is unknown"
        )

    async def _list_names(self, op: str, key: str, field: str, endpoint: str) -> list[str]:
        params = {"NameContains": resource_base(endpoint), "MaxResults": 100}
        return [item[field] for item in await self._paged(op, key, params)]

    async def list_endpoints(self, prefix: str) -> list[EndpointInfo]:
        """Every endpoint whose name starts with `prefix` (the reconcile's view of what runs)."""
        params: dict[str, Any] = {"MaxResults": 100}
        if prefix:
            params["NameContains"] = prefix
        summaries = await self._paged("list_endpoints", "Endpoints", params)
        infos: list[EndpointInfo] = []
        for summary in summaries:
            if not summary["EndpointName"].startswith(prefix):
                continue
            info = await self.describe_endpoint(summary["EndpointName"])
            if info is not None:  # deleted between list and describe
                infos.append(info)
        return infos

    # ------------------------------------------------------------------ inference

    async def invoke(
        self, name: str, body: bytes, content_type: str, accept: str | None = None
    ) -> InvokeResult:
        check_sync_payload(name, body)
        params: dict[str, Any] = {"EndpointName": name, "Body": body, "ContentType": content_type}
        if accept:
            params["Accept"] = accept

        def call() -> InvokeResult:
            resp = self.runtime.invoke_endpoint(**params)
            return InvokeResult(body=resp["Body"].read(), content_type=resp.get("ContentType"))

        return await self._run(call, inference=True)

    async def invoke_async(
        self, name: str, input_location: str, content_type: str
    ) -> AsyncInvocation:
        parse_s3_uri(input_location)  # fail fast on a non-S3 location
        resp = await self._call(
            self.runtime,
            "invoke_endpoint_async",
            EndpointName=name,
            InputLocation=input_location,
            ContentType=content_type,
        )
        return AsyncInvocation(
            inference_id=resp["InferenceId"],
            output_location=resp["OutputLocation"],
            failure_location=resp.get("FailureLocation"),
        )

    async def fetch_async_result(self, invocation: AsyncInvocation) -> bytes | None:
        body = await self._s3_get(invocation.output_location)
        if body is not None:
            return body
        if invocation.failure_location:
            failure = await self._s3_get(invocation.failure_location)
            if failure is not None:
                raise AsyncInferenceFailed(
                    f"async inference {invocation.inference_id} failed: "
                    f"{failure.decode('utf-8', 'replace')[:2000]}"
                )
        return None

    async def _s3_get(self, uri: str) -> bytes | None:
        bucket, key = parse_s3_uri(uri)

        def call() -> bytes:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

        try:
            return await self._run(call, inference=True)
        except ResourceNotFound as err:
            if err.aws_code in ("NoSuchKey", "404", "NotFound"):  # not written yet
                return None
            raise
        except InvalidRequest as err:
            if err.aws_code != "NoSuchBucket":
                raise
            # A configuration error, neither "not ready" nor a vanished endpoint (which a job
            # would answer by warming the model and submitting the inference again).
            raise InvalidRequest(
                f"async result bucket {bucket!r} does not exist (NoSuchBucket, reading {uri}): "
                "the endpoint writes its results under RADIANT_ASYNC_OUTPUT_S3_URI (or the "
                "model's own async output URI); create the bucket or correct the setting",
                aws_code=err.aws_code,
                http_status=err.http_status,
            ) from err
        except AccessDenied as err:
            # S3 answers 403, not 404, for a key that does not exist yet when the caller may
            # not list the bucket: say which permission is missing rather than "denied".
            raise AccessDenied(
                f"{err.message} (reading {uri}; the worker needs s3:GetObject and s3:ListBucket "
                "on the async output prefix: without ListBucket, S3 answers 403 for a result "
                "not written yet)",
                aws_code=err.aws_code,
                http_status=err.http_status,
            ) from err
