"""Child objects are built as data: names, ownership, the run's command, stop-safe Job settings."""
import json

from kubesweep.engine import config
from kubesweep.k8s import manifests

SWEEP = {
    "apiVersion": "kubesweep.io/v1alpha1", "kind": "Sweep",
    "metadata": {"name": "digits", "namespace": "ml", "uid": "u-1"},
    "spec": {
        "method": "random", "metric": {"name": "val_loss"}, "program": "train.py",
        "command": ["${env}", "${interpreter}", "${program}", "${args}", "${args_json_file}", "--data=${envvar:DATA}"],
        "parameters": {"lr": {"min": 0.1, "max": 1.0}},
        "stop_grace_period_seconds": 7,
        "template": {"spec": {"containers": [{"name": "train", "image": "img:1", "args": ["ignored"],
                                              "env": [{"name": "DATA", "value": "/mnt/data"}],
                                              "resources": {"limits": {"nvidia.com/gpu": 2}}}],
                              "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}},
    },
}


def _objects(params=None):
    c = config.load(SWEEP).config
    run = manifests.sweeprun(SWEEP, 3, params or {"lr": 0.5}, c)
    run["metadata"]["uid"] = "r-1"
    return c, run, manifests.job(run, c, push_url=None)


def test_names_are_deterministic_and_short_enough_for_labels():
    assert manifests.run_name("digits", 3) == "digits-0003"
    long = manifests.run_name("x" * 80, 12)
    assert len(long) <= 52 and long.endswith("-0012") and long == manifests.run_name("x" * 80, 12)
    assert manifests.run_name("x" * 80, 12) != manifests.run_name("x" * 79 + "y", 12)


def test_ownership_chain_cascades_without_finalizers():
    _, run, job = _objects()
    assert run["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["metadata"]["ownerReferences"][0] == {
        "apiVersion": "kubesweep.io/v1alpha1", "kind": "SweepRun", "name": "digits-0003", "uid": "r-1",
        "controller": True, "blockOwnerDeletion": True}


def test_job_is_never_retried_and_honours_the_grace_period():
    _, _, job = _objects()
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["suspend"] is False
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == 7
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert spec["template"]["metadata"]["labels"]["kubesweep.io/run"] == "digits-0003"


def test_command_is_the_expanded_wandb_command_with_args_file_mounted():
    _, _, job = _objects()
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["command"] == ["/usr/bin/env", "python", "train.py", "--lr=0.5", "/etc/kubesweep/args.json",
                               "--data=/mnt/data"]
    assert "args" not in main
    vol = job["spec"]["template"]["spec"]["volumes"][0]
    assert vol["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.annotations['kubesweep.io/args-json']"
    assert json.loads(job["spec"]["template"]["metadata"]["annotations"]["kubesweep.io/args-json"]) == {"lr": 0.5}
    assert {"name": "KUBESWEEP_RUN", "value": "digits-0003"} in main["env"]


def test_without_command_or_program_the_image_entrypoint_gets_the_flags():
    spec = {k: v for k, v in SWEEP["spec"].items() if k not in ("command", "program")}
    c = config.load({**SWEEP, "spec": spec}).config
    run = manifests.sweeprun(SWEEP, 0, {"lr": 0.5}, c)
    run["metadata"]["uid"] = "r"
    main = manifests.job(run, c, None)["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in main and main["args"] == ["ignored", "--lr=0.5"]


def test_push_runs_get_a_pod_bound_token_with_the_kubesweep_audience():
    c = config.load({**SWEEP, "spec": {**SWEEP["spec"], "metrics": {"source": "push"}}}).config
    run = manifests.sweeprun(SWEEP, 0, {"lr": 0.5}, c)
    run["metadata"]["uid"] = "r"
    pod = manifests.job(run, c, "http://kubesweep.kubesweep:8081")["spec"]["template"]["spec"]
    token = [v for v in pod["volumes"] if v["name"] == "kubesweep-token"][0]["projected"]["sources"][0]
    assert token["serviceAccountToken"]["audience"] == "kubesweep"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["KUBESWEEP_PUSH_URL"] == "http://kubesweep.kubesweep:8081"


def test_gpus_requested_sums_containers():
    assert manifests.gpus_requested(SWEEP["spec"]["template"]) == 2.0


def test_pod_outcomes_tell_failures_apart():
    def pod(phase, **status):
        return {"status": {"phase": phase, **status}}

    term = lambda reason, code: {"containerStatuses": [{"state": {"terminated": {"reason": reason, "exitCode": code}}}]}  # noqa: E731
    assert manifests.pod_outcome(pod("Running")) is None
    assert manifests.pod_outcome(pod("Succeeded")) == ("Succeeded", "Completed")
    assert manifests.pod_outcome(pod("Failed", **term("OOMKilled", 137))) == ("Failed", "OOMKilled (exit code 137)")
    assert manifests.pod_outcome(pod("Failed", **term("Error", 2))) == ("Failed", "Error (exit code 2)")
    assert manifests.pod_outcome(pod("Failed", reason="Evicted", message="low memory")) == ("Failed", "Evicted: low memory")


def test_template_problems_name_the_field():
    spec = {**SWEEP["spec"], "template": {"spec": {"containers": []}}}
    assert manifests.template_problems(config.load({**SWEEP, "spec": spec}).config)[0].startswith("template.spec.containers")
