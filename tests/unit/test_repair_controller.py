"""The repair controller's glue against the in-memory API: fences written to the ledger
and the Node, members deleted by policy, the record on the workload, Events; bad
reports and an open breaker handled without harm."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from egpu.controllers.repair import RepairController, RepairSettings, node_health
from egpu.controllers.runtime import Runtime
from egpu.controllers.workloads import WorkloadController
from egpu.engines.health.report import build_report, report_text
from egpu.engines.health.rules import GpuHealth
from egpu.engines.repair.fencing import BreakerPolicy
from fakeapi import FakeApi
from objects import gpu_node, member_pod

pytestmark = pytest.mark.unit
NOW = 1_000_000.0
WORKLOAD_PATH = "/apis/egpu.io/v1alpha1/namespaces/ns/gpuworkloads/train"


def report(bad: dict[int, str], gpus: int = 8, at: float = NOW) -> str:
    states = [
        GpuHealth(i, healthy=i not in bad, reasons=(bad[i],) if i in bad else (), last_fault=at)
        for i in range(gpus)
    ]
    return report_text(build_report(at, states))


def workload(policy: str = "ReplaceMember", restarts: int = 0) -> dict[str, Any]:
    annotations = {}
    if restarts:
        annotations["egpu.io/repair"] = json.dumps({"restarts": restarts, "lastRepair": 1.0})
    return {
        "apiVersion": "egpu.io/v1alpha1",
        "kind": "GPUWorkload",
        "metadata": {
            "name": "train",
            "namespace": "ns",
            "uid": "uid-train",
            "annotations": annotations,
        },
        "spec": {
            "replicas": 2,
            "gpusPerPod": 4,
            "repair": {
                "policy": policy,
                "maxRestarts": 2,
                "checkpoint": {"annotation": "example.com/ckpt"},
            },
            "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }


def scene(api: FakeApi, policy: str = "ReplaceMember", restarts: int = 0, **kw: Any) -> Any:
    runtime = Runtime(client=api, nodes=api.nodes, pods=api.pods)  # type: ignore[arg-type]
    runtime.feed_ledger()
    for i in range(4):
        api.add_node(gpu_node(f"n{i}", gpus=8))
    body = workload(policy, restarts)
    runtime.workloads["ns/train"] = body
    api.objects[WORKLOAD_PATH] = body
    for rank, gpus in ((0, "0,1,2,3"), (1, "4,5,6,7")):
        api.add_pod(
            member_pod(
                "train",
                rank,
                2,
                gpus=4,
                node="n0",
                annotations={"egpu.io/gpu-ids": gpus, "example.com/ckpt": f"step-{9 - rank}"},
            )
        )
    workloads = WorkloadController(runtime)
    settings = RepairSettings(breaker=BreakerPolicy(min_nodes=1, **kw))
    return runtime, workloads, RepairController(runtime, workloads, settings)


async def agent_says(api: FakeApi, node: str, text: str) -> None:
    await api.patch(
        f"/api/v1/nodes/{node}", {"metadata": {"annotations": {"egpu.io/gpu-health": text}}}
    )
    await api.settle()


async def settle(api: FakeApi) -> None:
    await api.settle()
    await asyncio.sleep(0.01)
    await api.settle()


def node_annotations(api: FakeApi, name: str) -> dict[str, str]:
    return dict(api.objects[f"/api/v1/nodes/{name}"]["metadata"]["annotations"])


def test_a_fault_is_fenced_in_the_ledger_and_on_the_node_and_the_member_replaced() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, workloads, repair = scene(api)
        await agent_says(api, "n0", report({6: "Xid: XID 79"}))
        await repair.cycle(NOW)
        await settle(api)
        assert runtime.ledger.ledger.node_view("n0").unhealthy_gpus == (6,)
        ann = node_annotations(api, "n0")
        assert ann["egpu.io/unhealthy-gpus"] == "6"
        assert json.loads(ann["egpu.io/fenced-gpus"]) == {"gpus": [6], "at": NOW}
        assert api.pod("ns", "train-1") is None and api.pod("ns", "train-0") is not None
        record = json.loads(api.objects[WORKLOAD_PATH]["metadata"]["annotations"]["egpu.io/repair"])
        assert record == {"restarts": 1, "lastRepair": NOW, "resumeFrom": "step-9"}
        # the cache the workload controller builds pods from has the record already
        assert "egpu.io/repair" in runtime.workloads["ns/train"]["metadata"]["annotations"]
        verdict = workloads.health["ns/train"]
        assert (verdict.healthy, verdict.reason, verdict.repairing) == (
            False,
            "MemberReplaced",
            True,
        )
        reasons = {e["reason"] for e in api.events}
        assert {"GPUFenced", "MemberReplaced"} <= reasons
        # a second pass before the deletion is seen repairs nothing twice
        await repair.cycle(NOW + 1)
        record = json.loads(api.objects[WORKLOAD_PATH]["metadata"]["annotations"]["egpu.io/repair"])
        assert record["restarts"] == 1

    asyncio.run(go())


def test_restart_gang_deletes_every_member() -> None:
    async def go() -> None:
        api = FakeApi()
        _, _, repair = scene(api, "RestartGang")
        await agent_says(api, "n0", report({1: "RowRemapFailure: x"}))
        await repair.cycle(NOW)
        await settle(api)
        assert api.pod("ns", "train-0") is None and api.pod("ns", "train-1") is None

    asyncio.run(go())


def test_a_spent_retry_budget_fails_the_workload_and_deletes_nothing() -> None:
    async def go() -> None:
        api = FakeApi()
        _, workloads, repair = scene(api, restarts=2)
        await agent_says(api, "n0", report({0: "Xid: XID 48"}))
        await repair.cycle(NOW)
        await settle(api)
        assert api.pod("ns", "train-0") is not None
        verdict = workloads.health["ns/train"]
        assert verdict.failed and verdict.reason == "RetryBudgetExhausted"

    asyncio.run(go())


def test_healthy_again_is_unfenced() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, _, repair = scene(api, "None")
        await agent_says(api, "n2", report({3: "Xid: XID 79"}))
        await repair.cycle(NOW)
        await settle(api)
        assert node_annotations(api, "n2")["egpu.io/unhealthy-gpus"] == "3"
        await agent_says(api, "n2", report({}, at=NOW + 400))
        await repair.cycle(NOW + 400)
        await settle(api)
        ann = node_annotations(api, "n2")
        assert not ann.get("egpu.io/unhealthy-gpus") and not ann.get("egpu.io/fenced-gpus")
        assert runtime.ledger.ledger.node_view("n2").unhealthy_gpus == ()
        assert "GPUUnfenced" in {e["reason"] for e in api.events}

    asyncio.run(go())


def test_gpus_marked_by_others_are_kept_and_repaired_but_never_unfenced() -> None:
    async def go() -> None:
        api = FakeApi()
        _, _, repair = scene(api)
        await api.patch(
            "/api/v1/nodes/n0", {"metadata": {"annotations": {"egpu.io/unhealthy-gpus": "2"}}}
        )
        await agent_says(api, "n0", report({}))
        await repair.cycle(NOW)
        await settle(api)
        assert node_annotations(api, "n0")["egpu.io/unhealthy-gpus"] == "2"
        assert api.pod("ns", "train-0") is None  # it held GPU 2

    asyncio.run(go())


def test_an_unreadable_report_is_told_once_and_harms_nothing() -> None:
    async def go() -> None:
        api = FakeApi()
        _, _, repair = scene(api)
        await agent_says(api, "n1", "{broken")
        await repair.cycle(NOW)
        await repair.cycle(NOW + 1)
        await settle(api)
        bad = [e for e in api.events if e["reason"] == "InvalidGPUHealthReport"]
        assert len(bad) == 1 and "not JSON" in bad[0]["message"]
        assert api.pod("ns", "train-0") is not None

    asyncio.run(go())


def test_an_open_breaker_fences_no_more_nodes_and_says_so() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, _, repair = scene(api, "None", max_fraction=0.25)  # 1 node of 4
        for name in ("n1", "n2", "n3"):
            await agent_says(api, name, report({0: "NVMLUnreachable: x"}))
        await repair.cycle(NOW)
        await settle(api)
        fenced = [
            n for n in ("n1", "n2", "n3") if node_annotations(api, n).get("egpu.io/fenced-gpus")
        ]
        assert fenced == ["n1"]
        assert runtime.ledger.ledger.node_view("n2").unhealthy_gpus == ()
        paused = [e["involvedObject"]["name"] for e in api.events if e["reason"] == "FencingPaused"]
        assert sorted(paused) == ["n2", "n3"]

    asyncio.run(go())


def test_a_new_leader_restores_the_fences_and_the_breakers_window() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, _, repair = scene(api)
        await api.patch(
            "/api/v1/nodes/n3",
            {
                "metadata": {
                    "annotations": {"egpu.io/fenced-gpus": json.dumps({"gpus": [5], "at": NOW})}
                }
            },
        )
        await api.settle()
        repair.restore()
        assert runtime.ledger.ledger.node_view("n3").unhealthy_gpus == (5,)
        assert repair.breaker.fenced_at == (("n3", NOW),)

    asyncio.run(go())


def test_a_stale_report_fences_nothing_new() -> None:
    node = gpu_node("n0", **{"egpu.io/gpu-health": report({1: "x"}, at=NOW - 301)})
    assert node_health(node, NOW, 300).reported_unhealthy is None
    assert node_health(node, NOW - 1, 300).reported_unhealthy == {1}


def risky_report(gpu: int, at: float = NOW) -> str:
    from egpu.engines.health.risk import Risk

    states = [GpuHealth(i) for i in range(8)]
    return report_text(build_report(at, states, {gpu: Risk(0.8, ("300 correctable ECC errors",))}))


def test_work_on_a_gpu_at_risk_moves_at_its_next_checkpoint_before_the_fault() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, workloads, repair = scene(api)
        await agent_says(api, "n0", risky_report(5))  # train-1 holds GPUs 4..7
        await repair.cycle(NOW)
        await settle(api)
        assert api.pod("ns", "train-1") is not None  # still working: wait for a checkpoint
        assert not node_annotations(api, "n0").get("egpu.io/unhealthy-gpus")
        assert workloads.health["ns/train"].reason == "GPUAtRisk"
        await repair.cycle(NOW + 1)
        assert api.pod("ns", "train-1") is not None
        # the job writes its next checkpoint
        await api.patch(
            "/api/v1/namespaces/ns/pods/train-1",
            {"metadata": {"annotations": {"example.com/ckpt": "step-20"}}},
        )
        await api.settle()
        await repair.cycle(NOW + 2)
        await settle(api)
        assert api.pod("ns", "train-1") is None and api.pod("ns", "train-0") is not None
        assert node_annotations(api, "n0")["egpu.io/unhealthy-gpus"] == "5"
        assert runtime.ledger.ledger.node_view("n0").unhealthy_gpus == (5,)
        assert "MovedBeforeFault" in {e["reason"] for e in api.events}
        record = json.loads(api.objects[WORKLOAD_PATH]["metadata"]["annotations"]["egpu.io/repair"])
        assert record["restarts"] == 1 and record["resumeFrom"] == "step-9"
        # while the GPU stays at risk, it stays fenced
        await repair.cycle(NOW + 3)
        await settle(api)
        assert node_annotations(api, "n0")["egpu.io/unhealthy-gpus"] == "5"

    asyncio.run(go())


def iso(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def set_ready(api: FakeApi, node: str, status: str, since: float) -> None:
    condition = {"type": "Ready", "status": status, "lastTransitionTime": iso(since)}
    await api.patch(f"/api/v1/nodes/{node}/status", {"status": {"conditions": [condition]}})
    await api.settle()


def test_a_node_not_ready_past_its_grace_is_lost_and_its_members_repaired() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, workloads, repair = scene(api)
        await set_ready(api, "n0", "Unknown", NOW - 10)
        await repair.cycle(NOW)  # within the 30 s grace: nothing yet
        await settle(api)
        assert api.pod("ns", "train-0") is not None and api.pod("ns", "train-1") is not None
        assert runtime.ledger.ledger.node_view("n0").free_gpus == ()  # never placed on
        await repair.cycle(NOW + 25)
        await settle(api)
        assert api.pod("ns", "train-0") is None and api.pod("ns", "train-1") is None
        assert "on lost node n0" in workloads.health["ns/train"].message
        assert repair.lost == {"n0"}
        assert not node_annotations(api, "n0").get("egpu.io/fenced-gpus")  # no fence needed

    asyncio.run(go())


def elastic_scene(api: FakeApi, **spec: Any) -> Any:
    """2 nodes of 8 GPUs, an elastic workload of 2 x 8 GPUs (min 1), one member each."""
    runtime = Runtime(client=api, nodes=api.nodes, pods=api.pods)  # type: ignore[arg-type]
    runtime.feed_ledger()
    for i in range(2):
        api.add_node(gpu_node(f"n{i}", gpus=8))
    body = workload("Shrink")
    body["spec"].update({"minReplicas": 1, "gpusPerPod": 8, **spec})
    runtime.workloads["ns/train"] = body
    api.objects[WORKLOAD_PATH] = body
    for rank in (0, 1):
        pod = member_pod(
            "train",
            rank,
            2,
            gpus=8,
            node=f"n{rank}",
            annotations={"egpu.io/gpu-ids": "0,1,2,3,4,5,6,7", "example.com/ckpt": "step-9"},
        )
        pod["status"] = {"phase": "Running"}
        api.add_pod(pod)
    workloads = WorkloadController(runtime)
    return runtime, workloads, RepairController(runtime, workloads, RepairSettings())


def record_on(api: FakeApi) -> dict[str, Any]:
    text = api.objects[WORKLOAD_PATH]["metadata"]["annotations"]["egpu.io/repair"]
    return dict(json.loads(text))


def test_a_lost_node_shrinks_an_elastic_workload_and_room_grows_it_back() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, workloads, repair = elastic_scene(api)
        await set_ready(api, "n1", "False", NOW - 60)
        await repair.cycle(NOW)
        await settle(api)
        assert api.pod("ns", "train-1") is None and api.pod("ns", "train-0") is not None
        assert record_on(api)["dropped"] == [1]
        assert "Shrunk" in {e["reason"] for e in api.events}
        # the workload controller does not create the dropped rank again
        written: list[dict[str, Any]] = []
        patch = api.patch

        async def spy(path: str, body: Any, content_type: str = "") -> Any:
            if path == WORKLOAD_PATH + "/status":
                written.append(body["status"])
            return await patch(path, body, content_type)

        api.patch = spy  # type: ignore[method-assign]
        await workloads.reconcile(runtime.workloads["ns/train"])
        await settle(api)
        assert api.pod("ns", "train-1") is None
        status = written[-1]
        assert (status["wantedMembers"], status["currentMembers"]) == (2, 1)
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["message"] == "0/1 members ready (shrunk from 2)"
        await repair.cycle(NOW + 1)
        verdict = workloads.health["ns/train"]
        assert (verdict.healthy, verdict.reason) == (False, "Shrunk")
        assert "running 1 of 2 wanted members" in verdict.message
        # the node is Ready again: room in the domain, the rank comes back
        await set_ready(api, "n1", "True", NOW + 2)
        await repair.cycle(NOW + 3)
        await settle(api)
        assert "dropped" not in record_on(api) and record_on(api)["restarts"] == 1
        assert "GrewBack" in {e["reason"] for e in api.events}
        await workloads.reconcile(runtime.workloads["ns/train"])
        await settle(api)
        pod = api.pod("ns", "train-1")
        assert pod is not None and pod["metadata"]["annotations"]["egpu.io/gang-size"] == "2"
        assert pod["metadata"]["annotations"]["egpu.io/resume-from"] == "step-9"

    asyncio.run(go())


def test_an_elastic_workload_at_its_minimum_replaces_the_lost_member() -> None:
    async def go() -> None:
        api = FakeApi()
        _, _, repair = elastic_scene(api, minReplicas=2)
        await set_ready(api, "n1", "Unknown", NOW - 60)
        await repair.cycle(NOW)
        await settle(api)
        assert api.pod("ns", "train-1") is None
        assert "dropped" not in record_on(api)
        assert "MemberReplaced" in {e["reason"] for e in api.events}

    asyncio.run(go())


def test_a_job_that_stops_making_progress_is_hung_and_restarted() -> None:
    async def go() -> None:
        api = FakeApi()
        _, workloads, repair = elastic_scene(api)
        body = api.objects[WORKLOAD_PATH]
        body["spec"]["repair"].update(
            {"policy": "RestartGang", "progressAnnotation": "example.com/step", "hangTimeout": "1m"}
        )
        for rank in (0, 1):
            await api.patch(
                f"/api/v1/namespaces/ns/pods/train-{rank}",
                {"metadata": {"annotations": {"example.com/step": "100"}}},
            )
        await api.settle()
        await repair.cycle(NOW)  # the clocks start
        await repair.cycle(NOW + 40)
        await api.patch(  # rank 0 makes progress; rank 1 does not
            "/api/v1/namespaces/ns/pods/train-0",
            {"metadata": {"annotations": {"example.com/step": "101"}}},
        )
        await api.settle()
        await repair.cycle(NOW + 50)
        await settle(api)
        assert api.pod("ns", "train-0") is not None and api.pod("ns", "train-1") is not None
        await repair.cycle(NOW + 61)
        await settle(api)
        assert api.pod("ns", "train-0") is None and api.pod("ns", "train-1") is None
        verdict = workloads.health["ns/train"]
        assert verdict.reason == "Hung" and "train-1 on n1 hung" in verdict.message
        hung = [e for e in api.events if e["reason"] == "Hung"]
        assert hung and hung[0]["type"] == "Warning"
        assert record_on(api)["resumeFrom"] == "step-9"

    asyncio.run(go())


def test_ranks_dropped_earlier_grow_back_after_the_policy_changed() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, _, repair = elastic_scene(api)
        await set_ready(api, "n1", "False", NOW - 60)
        await repair.cycle(NOW)
        await settle(api)
        assert record_on(api)["dropped"] == [1]
        body = api.objects[WORKLOAD_PATH]
        body["spec"]["repair"]["policy"] = "ReplaceMember"
        runtime.workloads["ns/train"] = body
        await set_ready(api, "n1", "True", NOW + 1)
        await repair.cycle(NOW + 2)
        await settle(api)
        assert "dropped" not in record_on(api)
        assert "GrewBack" in {e["reason"] for e in api.events}

    asyncio.run(go())


def test_a_new_leader_carries_on_the_breakers_count_of_lost_nodes() -> None:
    """A partition: the breaker let one lost node through (1 of 4 allowed). A new
    leader restores that count from the Node, so the next lost node is refused, not
    repaired as if the count started over."""

    async def go() -> None:
        api = FakeApi()
        runtime, workloads, repair = scene(api, "None", max_fraction=0.25)
        await set_ready(api, "n0", "Unknown", NOW - 60)
        await repair.cycle(NOW)
        await settle(api)
        assert repair.lost == {"n0"}
        assert json.loads(node_annotations(api, "n0")["egpu.io/lost-node"]) == {"at": NOW}
        new = RepairController(runtime, workloads, repair.settings)
        new.restore()
        assert new.breaker.fenced_at == (("n0", NOW),)
        await set_ready(api, "n1", "Unknown", NOW - 60)
        await new.cycle(NOW + 5)
        await settle(api)
        assert new.lost == {"n0"}
        paused = [e["involvedObject"]["name"] for e in api.events if e["reason"] == "FencingPaused"]
        assert paused == ["n1"]
        # back and out of the window: the record goes
        await set_ready(api, "n0", "True", NOW + 10)
        await new.cycle(NOW + 20)
        await settle(api)
        assert "egpu.io/lost-node" in node_annotations(api, "n0")
        await new.cycle(NOW + 301)
        await settle(api)
        assert "egpu.io/lost-node" not in node_annotations(api, "n0")

    asyncio.run(go())


def test_a_new_leader_carries_on_the_hang_clock_recorded_on_the_members() -> None:
    async def go() -> None:
        api = FakeApi()
        runtime, workloads, repair = elastic_scene(api)
        body = api.objects[WORKLOAD_PATH]
        body["spec"]["repair"].update(
            {"policy": "RestartGang", "progressAnnotation": "example.com/step", "hangTimeout": "1m"}
        )
        for rank in (0, 1):
            await api.patch(
                f"/api/v1/namespaces/ns/pods/train-{rank}",
                {"metadata": {"annotations": {"example.com/step": "100"}}},
            )
        await api.settle()
        await repair.cycle(NOW)  # the clocks start
        await repair.cycle(NOW + 20)
        await settle(api)
        ann = api.pod("ns", "train-1")["metadata"]["annotations"]  # type: ignore[index]
        assert "egpu.io/progress-seen" not in ann  # still for less than half the timeout
        await api.patch(  # rank 0 makes progress; rank 1 does not
            "/api/v1/namespaces/ns/pods/train-0",
            {"metadata": {"annotations": {"example.com/step": "101"}}},
        )
        await api.settle()
        await repair.cycle(NOW + 31)
        await settle(api)
        ann = api.pod("ns", "train-1")["metadata"]["annotations"]  # type: ignore[index]
        assert json.loads(ann["egpu.io/progress-seen"]) == {"value": "100", "since": NOW}
        ann = api.pod("ns", "train-0")["metadata"]["annotations"]  # type: ignore[index]
        assert "egpu.io/progress-seen" not in ann  # progress: nothing written
        # the leader changes: the new one carries rank 1's clock on
        new = RepairController(runtime, workloads, repair.settings)
        new.restore()
        await new.cycle(NOW + 61)
        await settle(api)
        assert api.pod("ns", "train-0") is None and api.pod("ns", "train-1") is None
        assert workloads.health["ns/train"].reason == "Hung"

    asyncio.run(go())


def test_a_grown_back_rank_that_is_never_placed_is_dropped_again_and_reported() -> None:
    async def go() -> None:
        t = 1_767_225_600.0  # when the fake API says every object was created
        api = FakeApi()
        runtime, workloads, repair = elastic_scene(api)
        await set_ready(api, "n1", "False", t - 60)
        await repair.cycle(t - 5)
        await settle(api)
        assert record_on(api)["dropped"] == [1]
        await set_ready(api, "n1", "True", t - 4)
        await repair.cycle(t - 3)  # room again: rank 1 comes back
        await settle(api)
        assert record_on(api)["grown"] == [1]
        await workloads.reconcile(runtime.workloads["ns/train"])
        await settle(api)
        assert api.pod("ns", "train-1") is not None  # created, never bound
        await repair.cycle(t + 10)
        await settle(api)
        assert api.pod("ns", "train-1") is not None
        await repair.cycle(t + 31)
        await settle(api)
        assert api.pod("ns", "train-1") is None
        assert record_on(api)["dropped"] == [1] and record_on(api)["growFailedAt"] == t + 31
        failed = [e for e in api.events if e["reason"] == "GrowBackFailed"]
        assert failed and failed[0]["type"] == "Warning"
        assert workloads.health["ns/train"].reason == "GrowBackFailed"
        await repair.cycle(t + 32)  # room by GPU count, but held back
        await settle(api)
        assert record_on(api)["dropped"] == [1]
        assert "tried again in" in workloads.health["ns/train"].message

    asyncio.run(go())


def test_a_slow_repair_of_one_workload_does_not_hold_back_another() -> None:
    """Repairs of different workloads in one pass go on side by side: a fault under one
    is not left waiting behind the API calls of another's repair."""

    async def go() -> None:
        api = FakeApi()
        runtime, _, repair = scene(api)
        other = workload()
        other["metadata"].update({"name": "other", "uid": "uid-other"})
        other_path = WORKLOAD_PATH.replace("/train", "/other")
        runtime.workloads["ns/other"] = other
        api.objects[other_path] = other
        for rank, gpus in ((0, "0,1,2,3"), (1, "4,5,6,7")):
            api.add_pod(
                member_pod(
                    "other", rank, 2, gpus=4, node="n1", annotations={"egpu.io/gpu-ids": gpus}
                )
            )
        await api.settle()
        await agent_says(api, "n0", report({6: "Xid: XID 79"}))
        await agent_says(api, "n1", report({6: "Xid: XID 79"}))
        release = asyncio.Event()
        patch = api.patch

        async def slow(path: str, body: Any, content_type: str = "") -> Any:
            if path == WORKLOAD_PATH:  # train's record: the API server is slow for it
                await release.wait()
            return await patch(path, body, content_type)

        api.patch = slow  # type: ignore[method-assign]
        other_deleted = asyncio.Event()
        request = api.request

        async def spy(method: str, path: str, **kw: Any) -> Any:
            if method == "DELETE" and path.endswith("/pods/other-1"):
                other_deleted.set()
            return await request(method, path, **kw)

        api.request = spy  # type: ignore[method-assign]
        passing = asyncio.create_task(repair.cycle(NOW))
        try:
            await asyncio.wait_for(other_deleted.wait(), 3)
        finally:
            release.set()
            await passing
        await settle(api)
        assert api.pod("ns", "train-1") is None

    asyncio.run(go())
