"""Child objects of a Sweep, built as plain data (no API calls): unit-tested as data, applied by the controller.

Ownership: Sweep -> SweepRun -> Job -> Pod, all by owner references, so deleting a Sweep
cascades through the garbage collector without a finalizer.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Mapping

from ..engine.command import build_argv, uses_args_json_file
from ..engine.config import SweepConfig

GROUP, VERSION = "kubesweep.io", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
LABEL_SWEEP = "kubesweep.io/sweep"
LABEL_RUN = "kubesweep.io/run"
LABEL_INDEX = "kubesweep.io/index"
ANNOTATION_ARGS = "kubesweep.io/args-json"
ARGS_JSON_PATH = "/etc/kubesweep/args.json"
TOKEN_DIR = "/var/run/secrets/kubesweep"
TOKEN_AUDIENCE = "kubesweep"
GPU_RESOURCE = "nvidia.com/gpu"
MAX_NAME = 52  # Job names become label values (63) and pod names get a 6-character suffix


def run_name(sweep: str, index: int) -> str:
    """Deterministic run name: the same sweep and index always give the same SweepRun and Job."""
    name = f"{sweep}-{index:04d}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(sweep.encode()).hexdigest()[:6]
    keep = MAX_NAME - len(f"-{digest}-{index:04d}")
    return f"{sweep[:keep].rstrip('-.')}-{digest}-{index:04d}"


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True,
    }


def metrics_container_index(config: SweepConfig) -> int:
    containers = ((config.template or {}).get("spec") or {}).get("containers") or []
    if config.metrics_container:
        for i, c in enumerate(containers):
            if c.get("name") == config.metrics_container:
                return i
        raise ValueError(f"metrics.container: no container named {config.metrics_container!r} in template.spec.containers")
    return 0


def template_problems(config: SweepConfig) -> list[str]:
    """What makes the pod template unusable, in words that name the field."""
    containers = ((config.template or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        return ["template.spec.containers: the Sweep needs a pod template with at least one container (image, resources)"]
    out = []
    try:
        metrics_container_index(config)
    except ValueError as exc:
        out.append(str(exc))
    if config.command is None and config.program is None and not containers[0].get("image"):
        out.append("template.spec.containers[0].image: set the image that runs your training script")
    return out


def gpus_requested(template: Mapping[str, Any] | None) -> float:
    total = 0.0
    for c in ((template or {}).get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        amount = (res.get("limits") or {}).get(GPU_RESOURCE, (res.get("requests") or {}).get(GPU_RESOURCE, 0))
        try:
            total += float(amount)
        except (TypeError, ValueError):
            pass
    return total


def run_argv(config: SweepConfig, params: Mapping[str, Any]) -> list[str] | None:
    """The run's full command, or None when the sweep has neither command nor program (then the
    image's own entrypoint runs with the W&B `${args}` flags appended to its args)."""
    if config.command is None and config.program is None:
        return None
    env = _literal_env(config)
    return build_argv(config.command, params, program=config.program, env=env, args_json_file=ARGS_JSON_PATH)


def _literal_env(config: SweepConfig) -> dict[str, str]:
    containers = ((config.template or {}).get("spec") or {}).get("containers") or [{}]
    env = containers[metrics_container_index(config)].get("env") or []
    return {e["name"]: e["value"] for e in env if isinstance(e, dict) and "name" in e and isinstance(e.get("value"), str)}


def sweeprun(sweep: Mapping[str, Any], index: int, params: Mapping[str, Any], config: SweepConfig) -> dict[str, Any]:
    name = run_name(sweep["metadata"]["name"], index)
    argv = run_argv(config, params)
    return {
        "apiVersion": API_VERSION,
        "kind": "SweepRun",
        "metadata": {
            "name": name,
            "namespace": sweep["metadata"]["namespace"],
            "labels": {LABEL_SWEEP: sweep["metadata"]["name"], LABEL_INDEX: str(index)},
            "ownerReferences": [owner_reference(sweep)],
        },
        "spec": {"sweep": sweep["metadata"]["name"], "index": index, "parameters": dict(params),
                 "args": argv if argv is not None else [f"--{k}={v}" for k, v in params.items()]},
    }


def job(run: Mapping[str, Any], config: SweepConfig, push_url: str | None) -> dict[str, Any]:
    """The Job of one run: never retried (backoffLimit 0, restartPolicy Never), stopped by suspending."""
    meta, spec = run["metadata"], run["spec"]
    params = spec["parameters"]
    labels = {LABEL_SWEEP: spec["sweep"], LABEL_RUN: meta["name"], LABEL_INDEX: str(spec["index"]),
              "app.kubernetes.io/managed-by": "kubesweep"}
    template = copy.deepcopy(config.template or {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(tmeta.get("labels") or {}), **labels}
    tmeta["annotations"] = {**(tmeta.get("annotations") or {}), ANNOTATION_ARGS: json.dumps(params)}
    pod = template.setdefault("spec", {})
    pod["restartPolicy"] = "Never"
    pod["terminationGracePeriodSeconds"] = config.stop_grace_period_seconds
    containers = pod["containers"]
    for c in containers + list(pod.get("initContainers") or []):
        _quantities_as_strings(c)
    idx = metrics_container_index(config)
    main = containers[idx]
    argv = run_argv(config, params)
    if argv is not None:
        main["command"] = argv
        main.pop("args", None)
    else:
        main["args"] = list(main.get("args") or []) + [f"--{k}={v}" for k, v in params.items()]
    env = [e for e in main.get("env") or [] if not str(e.get("name", "")).startswith("KUBESWEEP_")]
    env += [{"name": "KUBESWEEP_RUN", "value": meta["name"]}, {"name": "KUBESWEEP_SWEEP", "value": spec["sweep"]}]
    volumes, mounts = list(pod.get("volumes") or []), list(main.get("volumeMounts") or [])
    if uses_args_json_file(config.command):
        volumes.append({"name": "kubesweep-args", "downwardAPI": {"items": [
            {"path": "args.json", "fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_ARGS}']"}}]}})
        mounts.append({"name": "kubesweep-args", "mountPath": ARGS_JSON_PATH.rsplit("/", 1)[0], "readOnly": True})
    if config.metrics_source == "push" and push_url:
        # A token bound to this pod: the push endpoint learns the run from the token, not the request.
        volumes.append({"name": "kubesweep-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]}})
        mounts.append({"name": "kubesweep-token", "mountPath": TOKEN_DIR, "readOnly": True})
        env += [{"name": "KUBESWEEP_PUSH_URL", "value": push_url},
                {"name": "KUBESWEEP_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"}]
    main["env"] = env
    if mounts:
        main["volumeMounts"] = mounts
    if volumes:
        pod["volumes"] = volumes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels,
                     "ownerReferences": [owner_reference(run)]},
        "spec": {"backoffLimit": 0, "completions": 1, "parallelism": 1, "suspend": False, "template": template},
    }


def _quantities_as_strings(container: dict[str, Any]) -> None:
    # YAML lets a user write `nvidia.com/gpu: 1`; the API's Quantity is a string, and the client checks it.
    for kind in ("limits", "requests"):
        res = (container.get("resources") or {}).get(kind)
        if isinstance(res, dict):
            for k, v in res.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    res[k] = str(v)


def pod_outcome(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """("Succeeded", reason) or ("Failed", reason) once the pod has ended, else None."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return "Succeeded", "Completed"
    if phase != "Failed":
        return None
    if status.get("reason"):  # Evicted, DeadlineExceeded, NodeLost, ...
        msg = status.get("message")
        return "Failed", f"{status['reason']}: {msg}" if msg else status["reason"]
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return "Failed", f"{term.get('reason') or 'Error'} (exit code {term.get('exitCode')})"
    return "Failed", "Failed"


def job_failure(job_obj: Mapping[str, Any]) -> str | None:
    """The reason a Job failed (BackoffLimitExceeded, DeadlineExceeded, ...), or None."""
    for cond in (job_obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            return cond.get("reason") or "Failed"
    return None
