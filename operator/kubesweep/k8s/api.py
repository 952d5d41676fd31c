"""The few API calls the operator makes, over the official kubernetes client.

The client is synchronous; every call runs in a worker thread so kopf's event loop never blocks.
Objects travel as plain dicts (the JSON the API server sent), never as client model classes.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Iterator

import kubernetes
from kubernetes.client.exceptions import ApiException

from .manifests import GROUP, LABEL_RUN, LABEL_SWEEP, VERSION
from .records import now_rfc3339

TIMEOUT = (5, 30)  # connect, read seconds for ordinary calls


def load_client_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _json(resp: Any) -> Any:
    return json.loads(resp.data) if resp.data else None


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient | None = None):
        if api_client is None:
            conf = kubernetes.client.Configuration.get_default_copy()
            conf.connection_pool_maxsize = 256  # every running pod's log stream holds a connection
            api_client = kubernetes.client.ApiClient(conf)
        self.client = api_client
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.batch = kubernetes.client.BatchV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.authn = kubernetes.client.AuthenticationV1Api(self.client)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", TIMEOUT)
        kwargs.setdefault("_preload_content", False)
        return _json(await asyncio.to_thread(fn, *args, **kwargs))

    # -- SweepRuns --------------------------------------------------------------------------------
    async def create_sweeprun(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(object, created). A 409 means a previous attempt already made it: read it back."""
        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return await self._call(self.custom.create_namespaced_custom_object, GROUP, VERSION, ns, "sweepruns", body), True
        except ApiException as exc:
            if exc.status != 409:
                raise
        return await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION, ns, "sweepruns", name), False

    async def list_sweepruns(self, ns: str, sweep: str) -> list[dict[str, Any]]:
        out = await self._call(self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, "sweepruns",
                               label_selector=f"{LABEL_SWEEP}={sweep}")
        return out["items"]

    async def patch_sweeprun_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        await self._call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, ns, "sweepruns", name,
                         {"status": status})

    async def patch_sweep_status(self, ns: str, name: str, status: dict[str, Any]) -> None:
        await self._call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, ns, "sweeps", name,
                         {"status": status})

    # -- Jobs and pods ----------------------------------------------------------------------------
    async def create_job(self, body: dict[str, Any]) -> bool:
        """True when created, False when it already existed (idempotent by name)."""
        try:
            await self._call(self.batch.create_namespaced_job, body["metadata"]["namespace"], body)
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    async def suspend_job(self, ns: str, name: str) -> None:
        """Stop a run: the Job controller deletes its pods with their grace period and, suspended,
        never starts another."""
        try:
            await self._call(self.batch.patch_namespaced_job, name, ns, {"spec": {"suspend": True}})
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_pod(self, ns: str, name: str, grace_seconds: int) -> None:
        """SIGTERM now (the kubelet gives the grace period): a busy Job controller may take many
        seconds to act on a suspend; a suspended Job never replaces the pod."""
        try:
            await self._call(self.core.delete_namespaced_pod, name, ns, grace_period_seconds=grace_seconds)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def list_run_pods(self, ns: str, sweep: str) -> list[dict[str, Any]]:
        out = await self._call(self.core.list_namespaced_pod, ns, label_selector=f"{LABEL_SWEEP}={sweep},{LABEL_RUN}")
        return out["items"]

    async def get_pod(self, ns: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call(self.core.read_namespaced_pod, name, ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def follow_log(self, ns: str, pod: str, container: str | None) -> Iterator[bytes]:
        """The container's log from its first byte, following until the container ends (blocking)."""
        # A silent log for 10 minutes (a long epoch) just reconnects; delivered rows are skipped.
        kwargs: dict[str, Any] = {"follow": True, "_preload_content": False, "_request_timeout": (5, 600)}
        if container:
            kwargs["container"] = container
        resp = self.core.read_namespaced_pod_log(pod, ns, **kwargs)
        try:
            yield from resp.stream(65536, decode_content=True)
        finally:
            resp.release_conn()

    # -- Events and authentication ----------------------------------------------------------------
    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str, name: str | None = None) -> None:
        """Post an Event about `obj`. With a `name` it is posted at most once (409: it exists)."""
        meta = obj["metadata"]
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name or f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "kubesweep"}, "reportingComponent": "kubesweep",
            "firstTimestamp": now_rfc3339(), "lastTimestamp": now_rfc3339(), "count": 1,
        }
        try:
            await self._call(self.core.create_namespaced_event, meta["namespace"], body)
        except ApiException as exc:
            if exc.status != 409 or name is None:
                raise

    async def token_review(self, token: str, audience: str) -> dict[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [audience]}}
        return await self._call(self.authn.create_token_review, body)
