"""API hiccups the real API server can't be made to produce on demand: injected with a fake client.

The controller must keep a stop decision until the Job is really suspended, announce it once,
and keep counting rows while status writes fail."""
import asyncio

from kubernetes.client.exceptions import ApiException

from kubesweep.k8s.controller import SweepController

SWEEP = {
    "apiVersion": "kubesweep.io/v1alpha1", "kind": "Sweep",
    "metadata": {"name": "s", "namespace": "ns", "uid": "u", "generation": 1},
    "spec": {"method": "grid", "metric": {"name": "loss"}, "parameters": {"q": {"values": [1, 2]}},
             "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 3}, "parallelism": 2,
             "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
}


class FlakyKube:
    """Answers like an API server, except that the first `fail` writes of each kind get a 500."""

    def __init__(self, fail: int):
        self.fail = {"status": fail, "suspend": fail, "job": 0}
        self.suspended, self.events, self.statuses, self.jobs = [], [], {}, []
        self.event_names = set()
        self.deleted_pods = []

    def _maybe_fail(self, kind):
        if self.fail[kind] > 0:
            self.fail[kind] -= 1
            raise ApiException(status=500, reason="Internal Server Error")

    async def list_sweepruns(self, ns, sweep):
        return []

    async def list_run_pods(self, ns, sweep):
        return []

    async def create_sweeprun(self, body):
        return {**body, "metadata": {**body["metadata"], "uid": "r-" + body["metadata"]["name"]}}, True

    async def create_job(self, body):
        self._maybe_fail("job")
        self.jobs.append(body["metadata"]["name"])
        return True

    async def patch_sweeprun_status(self, ns, name, status):
        self._maybe_fail("status")
        self.statuses[name] = status

    async def patch_sweep_status(self, ns, name, status):
        pass

    async def suspend_job(self, ns, name):
        self._maybe_fail("suspend")
        self.suspended.append(name)

    async def delete_pod(self, ns, name, grace_seconds):
        self.deleted_pods.append((name, grace_seconds))

    async def event(self, obj, type_, reason, message, name=None):
        if name is not None and name in self.event_names:
            return  # the API server answers 409 for a second Event of the same name
        self.event_names.add(name)
        self.events.append((reason, message))


def test_a_stop_survives_failing_writes_and_is_announced_once():
    async def scenario():
        kube = FlakyKube(fail=3)
        c = SweepController(kube, SWEEP)
        await c.start()
        await c.reconcile()
        assert kube.jobs == ["s-0000", "s-0001"]
        for rec in c.runs.values():
            rec.started_at, rec.pod = 1.0, rec.name + "-pod"
        c.on_rows("s-0000", [{"loss": 0.1}], 0.0)
        decisions = c.on_rows("s-0001", [{"loss": 0.9}], 0.0)
        assert [d.run for d in decisions] == ["s-0001"]
        for _ in range(10):  # the controller's loop retries what failed
            await asyncio.sleep(0)
            try:
                await c.reconcile()
                await c.flush()
            except ApiException:
                pass
        await c.stop()
        return kube, c

    kube, c = asyncio.run(scenario())
    assert kube.suspended == ["s-0001"], "suspended exactly once, after the failures"
    assert kube.deleted_pods == [("s-0001-pod", 30)], "its pod gets SIGTERM with the sweep's grace period"
    assert [r for r, _ in kube.events if r == "RunEarlyStopped"] == ["RunEarlyStopped"]
    assert kube.statuses["s-0001"]["state"] == "EarlyStopped"
    assert kube.statuses["s-0001"]["decision"]["band"] == 1
    assert kube.statuses["s-0000"]["iteration"] == 1


def test_a_failed_job_create_is_retried_for_the_same_run():
    async def scenario():
        kube = FlakyKube(fail=0)
        kube.fail["job"] = 1
        c = SweepController(kube, SWEEP)
        await c.start()
        for _ in range(3):
            try:
                await c.reconcile()
            except ApiException:
                pass
        await c.stop()
        return kube, c

    kube, c = asyncio.run(scenario())
    assert sorted(kube.jobs) == ["s-0000", "s-0001"], "the run whose Job failed to create got it on retry"
    assert sorted(c.runs) == ["s-0000", "s-0001"], "no run index skipped or doubled"
