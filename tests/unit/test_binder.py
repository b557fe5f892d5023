"""The binder against an in-memory API server, for the edge cases a real one rarely
shows on demand: lost replies, refusals, a leader that died mid plan write, and users'
strange pods. (The e2e tests run it against the real control plane.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from egpu.controllers import binder as binder_module
from egpu.controllers.binder import Binder, GangVerdict
from egpu.controllers.runtime import Runtime
from egpu.kube.client import ApiError, TransportError
from egpu.state.ledger_sync import BOUND
from fakeapi import FakeApi
from objects import gpu_node, gpu_pod, member_pod, owner, plan_annotation

pytestmark = pytest.mark.unit
TOPOLOGY = {
    "metadata": {"name": "default"},
    "spec": {
        "levels": [
            {"nodeLabel": "egpu.io/block"},
            {"nodeLabel": "egpu.io/leaf"},
            {"nodeLabel": "kubernetes.io/hostname"},
        ]
    },
}


class Verdicts:
    def __init__(self) -> None:
        self.last: dict[str, GangVerdict] = {}

    def set_verdict(self, key: str, verdict: GangVerdict) -> None:
        self.last[key] = verdict


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binder_module, "RETRY_BACKOFF_S", (0.0, 0.0, 0.0, 0.0))


def scene(api: FakeApi, leaves: dict[str, int], gpus: int = 8) -> tuple[Binder, Verdicts]:
    runtime = Runtime(client=api, nodes=api.nodes, pods=api.pods)  # type: ignore[arg-type]
    runtime.feed_ledger()
    runtime.topologies["default"] = TOPOLOGY
    runtime.refresh_topology()
    for leaf, count in leaves.items():
        for i in range(count):
            api.add_node(gpu_node(f"{leaf}-n{i}", gpus=gpus, leaf=leaf))
    verdicts = Verdicts()
    return Binder(runtime, verdicts), verdicts


def run(work: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(work())


async def cycle(api: FakeApi, binder: Binder) -> None:
    await api.settle()
    await binder.cycle()
    await api.settle()
    await asyncio.sleep(0.01)  # the Events and conditions sent on the side
    await api.settle()


def bound_to(api: FakeApi, name: str, namespace: str = "ns") -> str | None:
    pod = api.pod(namespace, name)
    return None if pod is None else pod["spec"].get("nodeName")


def events_on(api: FakeApi, name: str) -> list[dict[str, Any]]:
    return [e for e in api.events if e["involvedObject"]["name"] == name]


def workload_gang(api: FakeApi, name: str, size: int, gpus: int = 8, **kw: Any) -> None:
    for rank in range(size):
        annotations = {"egpu.io/topology-required": "egpu.io/leaf", **kw.get("annotations", {})}
        api.add_pod(member_pod(name, rank, size, gpus=gpus, annotations=annotations))


def test_one_malformed_pod_stops_nobody_and_is_told_why() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, verdicts = scene(api, {"l0": 2, "l1": 2})
        api.add_pod(
            gpu_pod("bad", labels={"egpu.io/gang": "g"}, annotations={"egpu.io/gang-size": "abc"})
        )
        api.add_pod(gpu_pod("solo", gpus=2))
        workload_gang(api, "train", 2)
        await cycle(api, binder)
        assert bound_to(api, "solo") and bound_to(api, "train-0") and bound_to(api, "train-1")
        assert bound_to(api, "bad") is None
        (event,) = events_on(api, "bad")
        assert event["type"] == "Warning" and event["reason"] == "FailedScheduling"
        assert "egpu.io/gang-size='abc'" in event["message"]
        condition = api.pod("ns", "bad")["status"]["conditions"][-1]  # type: ignore[index]
        assert (condition["type"], condition["status"], condition["reason"]) == (
            "PodScheduled",
            "False",
            "InvalidPod",
        )
        assert binder.sync.account_of("ns/bad") is None and not binder.sync.intents
        assert binder.in_flight == set()
        assert verdicts.last["ns/train"].scheduled
        assert binder.audit() == []

    run(go)


def test_a_bind_whose_reply_was_lost_is_a_success() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 1})
        api.add_pod(gpu_pod("p"))
        api.fail("POST", "/p/binding", TransportError("Server disconnected"), applied=True)
        await cycle(api, binder)
        assert bound_to(api, "p") == "l0-n0"
        assert ("DELETE", "/api/v1/namespaces/ns/pods/p") not in api.calls
        account = binder.sync.account_of("ns/p")
        assert account is not None and account.kind == BOUND
        assert binder.audit() == []

    run(go)


@pytest.mark.parametrize(
    "error",
    [
        ApiError(500, {"reason": "InternalError"}, "POST", "x"),
        ApiError(429, {"reason": "TooManyRequests"}, "POST", "x"),
        TransportError("payload cut short"),
    ],
)
def test_a_bind_refused_for_now_is_asked_again(error: Exception) -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 1})
        api.add_pod(gpu_pod("p"))
        api.fail("POST", "/p/binding", error)
        await cycle(api, binder)
        assert bound_to(api, "p") == "l0-n0"

    run(go)


def test_a_gang_that_cannot_be_completed_is_rolled_back_and_holds_nothing() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, verdicts = scene(api, {"l0": 2})
        workload_gang(api, "train", 2)
        refused = ApiError(422, {"reason": "Invalid", "message": "node is gone"}, "POST", "x")
        api.fail("POST", "/train-1/binding", refused)
        await cycle(api, binder)
        assert api.pod("ns", "train-0") is None, "bound alone it could not run: removed"
        pending = api.pod("ns", "train-1")
        assert pending is not None and "egpu.io/plan" not in pending["metadata"]["annotations"]
        assert not binder.sync.intents and binder.sync.account_of("ns/train-1") is None
        assert verdicts.last["ns/train"].reason == "BindFailed"
        assert "node is gone" in verdicts.last["ns/train"].message

    run(go)


def test_pods_without_an_owner_are_never_deleted() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 2})
        for i in range(2):
            api.add_pod(
                gpu_pod(
                    f"g{i}",
                    gpus=8,
                    labels={"egpu.io/gang": "g", "egpu.io/rank": str(i)},
                    annotations={"egpu.io/gang-size": "2"},
                )
            )
        api.fail("POST", "/g1/binding", ApiError(403, {"reason": "Forbidden"}, "POST", "x"))
        await cycle(api, binder)
        assert bound_to(api, "g0") is not None, "no owner could recreate it: it stays"
        assert not [c for c in api.calls if c[0] == "DELETE"]
        (event,) = [e for e in events_on(api, "g1") if e["reason"] == "FailedScheduling"]
        assert "stay bound" in event["message"]

    run(go)


def test_a_failed_replacement_never_kills_the_running_members() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 3})
        workload_gang(api, "train", 3)
        await cycle(api, binder)
        await api.request("DELETE", "/api/v1/namespaces/ns/pods/train-2")
        await api.settle()
        api.add_pod(
            member_pod("train", 2, 3, annotations={"egpu.io/topology-required": "egpu.io/leaf"})
        )
        api.fail("POST", "/train-2/binding", ApiError(422, {"reason": "Invalid"}, "POST", "x"))
        deletes = len([c for c in api.calls if c[0] == "DELETE"])
        await cycle(api, binder)
        assert bound_to(api, "train-0") and bound_to(api, "train-1")
        assert len([c for c in api.calls if c[0] == "DELETE"]) == deletes
        assert not binder.sync.intents
        binder.parking.capacity_changed()
        await cycle(api, binder)  # asked again: it binds now
        assert bound_to(api, "train-2")

    run(go)


def test_a_bind_whose_outcome_is_unknown_is_held_until_the_server_can_say() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 1}, gpus=1)
        api.add_pod(gpu_pod("p"))
        api.add_pod(gpu_pod("q"))
        for _ in range(binder_module.BIND_ATTEMPTS):
            api.fail("POST", "/p/binding", TransportError("timeout"))
            api.fail("GET", "/pods/p", TransportError("timeout"))
        api.fail("GET", "/pods/p", TransportError("timeout"))
        await cycle(api, binder)
        assert bound_to(api, "p") is None and "ns/p" in binder.doubtful
        assert "ns/p" in binder.sync.intents, "maybe bound: its GPU stays taken"
        assert bound_to(api, "q") is None, "the one GPU is not given to q meanwhile"
        await cycle(api, binder)  # the server answers now: p was never bound
        assert "ns/p" not in binder.doubtful
        binder.parking.capacity_changed()
        await cycle(api, binder)
        assert sum(1 for n in ("p", "q") if bound_to(api, n)) == 1

    run(go)


def test_a_plan_cut_short_by_a_crash_is_placed_again_whole_in_one_leaf() -> None:
    async def go() -> None:
        api = FakeApi()
        # l0 has 2 nodes, l1 has 4: only l1 holds the whole 4-node gang.
        binder, _ = scene(api, {"l0": 2, "l1": 4})
        for rank in range(4):
            pod = member_pod(
                "train",
                rank,
                4,
                uid=f"u{rank}",
                annotations={"egpu.io/topology-required": "egpu.io/leaf"},
            )
            if rank < 2:  # the dead leader recorded two of four plans, in l0
                pod["metadata"]["annotations"]["egpu.io/plan"] = plan_annotation(
                    f"u{rank}", f"l0-n{rank}", list(range(8)), "dead", 4
                )
            api.add_pod(pod)
        await cycle(api, binder)
        leaves = {bound_to(api, f"train-{r}") for r in range(4)}
        assert None not in leaves and {n.split("-")[0] for n in leaves} == {"l1"}  # type: ignore[union-attr]
        assert binder.audit() == []

    run(go)


def test_a_whole_plan_of_a_dead_leader_is_bound_where_it_says() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 2, "l1": 2})
        for rank in range(2):
            pod = member_pod("train", rank, 2, uid=f"u{rank}")
            pod["metadata"]["annotations"]["egpu.io/plan"] = plan_annotation(
                f"u{rank}", f"l1-n{rank}", list(range(8)), "p", 2
            )
            api.add_pod(pod)
        await cycle(api, binder)
        assert [bound_to(api, f"train-{r}") for r in range(2)] == ["l1-n0", "l1-n1"]

    run(go)


def test_a_pod_that_can_never_fit_is_told_why_on_the_pod() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 2})
        api.add_pod(gpu_pod("huge", gpus=9))
        await cycle(api, binder)
        (event,) = events_on(api, "huge")
        assert event["reason"] == "FailedScheduling" and "GPU" in event["message"]
        condition = api.pod("ns", "huge")["status"]["conditions"][-1]  # type: ignore[index]
        assert condition["reason"] == "Unschedulable"
        await cycle(api, binder)
        assert len(events_on(api, "huge")) == 1, "once per message, not once per cycle"

    run(go)


def test_forged_plans_and_gpu_ids_neither_pin_nor_hold() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 2})
        forged = plan_annotation("someone-else", "l0-n1", list(range(8)), "x", 1)
        api.add_pod(
            gpu_pod(
                "sly",
                gpus=1,
                annotations={"egpu.io/plan": forged, "egpu.io/gpu-ids": "0,1,2,3,4,5,6,7"},
            )
        )
        api.add_pod(gpu_pod("zero", gpus=0, annotations={"egpu.io/plan": forged}))
        await cycle(api, binder)
        sly = api.pod("ns", "sly")
        assert sly is not None and sly["spec"].get("nodeName")
        assert len(sly["metadata"]["annotations"]["egpu.io/gpu-ids"].split(",")) == 1
        node = sly["spec"]["nodeName"]
        assert binder.sync.ledger.node_usage(node).gpus_used == 1
        assert bound_to(api, "zero") is None
        assert "no nvidia.com/gpu" in events_on(api, "zero")[0]["message"]

    run(go)


def test_a_pod_claiming_someone_elses_workload_is_not_its_member() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, verdicts = scene(api, {"l0": 2})
        workload_gang(api, "train", 2)
        api.add_pod(
            gpu_pod(
                "intruder",
                labels={"egpu.io/workload": "train", "egpu.io/gang": "x", "egpu.io/rank": "abc"},
                owners=[owner("other", kind="ReplicaSet")],
            )
        )
        await cycle(api, binder)
        assert bound_to(api, "train-0") and bound_to(api, "train-1")
        assert "ns/train" in verdicts.last and verdicts.last["ns/train"].scheduled
        assert bound_to(api, "intruder") is None  # its own gang, and its rank is unreadable

    run(go)


def test_the_binding_carries_the_plan_the_ids_and_the_domain() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 1})
        api.add_pod(gpu_pod("p", gpus=2))
        await cycle(api, binder)
        pod = api.pod("ns", "p")
        assert pod is not None
        annotations = pod["metadata"]["annotations"]
        plan = json.loads(annotations["egpu.io/plan"])
        assert plan["uid"] == pod["metadata"]["uid"] and plan["node"] == "l0-n0"
        assert annotations["egpu.io/gpu-ids"] == ",".join(str(g) for g in plan["gpus"])
        assert json.loads(annotations["egpu.io/domain"])["egpu.io/leaf"] == "l0"

    run(go)


def test_with_watch_namespaces_only_their_pods_are_bound_yet_all_pods_hold_room() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 1})
        binder.runtime.namespaces = frozenset({"team-a"})
        # A pod of another namespace, already bound, holds 4 of the node's 8 GPUs.
        api.add_pod(gpu_pod("theirs-running", gpus=4, namespace="team-b", node="l0-n0"))
        api.add_pod(gpu_pod("theirs", gpus=1, namespace="team-b"))
        api.add_pod(gpu_pod("mine", gpus=2, namespace="team-a"))
        api.add_pod(gpu_pod("mine-too-big", gpus=5, namespace="team-a"))
        await cycle(api, binder)
        assert bound_to(api, "theirs", "team-b") is None  # not this operator's namespace
        assert bound_to(api, "mine", "team-a") == "l0-n0"
        assert bound_to(api, "mine-too-big", "team-a") is None  # 4 GPUs are taken
        assert binder.audit() == []


def test_a_node_filled_by_another_scheduler_during_the_plan_write_is_not_bound() -> None:
    # Found by the chaos soak: kube-scheduler cannot see a plan that is not bound yet, so
    # it bound a 3-GPU pod onto the GPUs planned for a gang; the binder, slowed while it
    # wrote the plan, then bound the gang there anyway: 10 GPUs asked of an 8-GPU node.
    async def go() -> None:
        api = FakeApi()
        binder, verdicts = scene(api, {"l0": 1})
        workload_gang(api, "train", 2, gpus=3)
        real_record = binder_module.record_plan
        landed = False

        async def record_then_a_foreign_pod_lands(*args: Any, **kw: Any) -> None:
            nonlocal landed
            await real_record(*args, **kw)
            if not landed:
                landed = True
                api.add_pod(gpu_pod("foreign", gpus=3, node="l0-n0", ours=False))
                await api.settle()

        binder_module.record_plan = record_then_a_foreign_pod_lands  # type: ignore[assignment]
        try:
            await cycle(api, binder)
        finally:
            binder_module.record_plan = real_record
        assert landed
        assert bound_to(api, "train-0") is None and bound_to(api, "train-1") is None
        for name in ("train-0", "train-1"):
            pod = api.pod("ns", name)
            assert pod is not None and "egpu.io/plan" not in pod["metadata"]["annotations"]
        assert not binder.sync.intents
        assert "l0-n0" in verdicts.last["ns/train"].message
        assert binder.audit() == []
        assert len(binder.sync.ledger.node_view("l0-n0").used_gpus) == 3  # the foreign pod's


def test_a_lone_pod_the_binder_cannot_honour_is_refused_naming_the_field() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 2})
        pod = gpu_pod("spread", gpus=1)
        pod["spec"]["topologySpreadConstraints"] = [{"maxSkew": 1, "topologyKey": "zone"}]
        api.add_pod(pod)
        await cycle(api, binder)
        assert bound_to(api, "spread") is None
        (event,) = events_on(api, "spread")
        assert event["reason"] == "FailedScheduling"
        assert "spec.topologySpreadConstraints" in event["message"]
        condition = api.pod("ns", "spread")["status"]["conditions"][-1]  # type: ignore[index]
        assert (condition["status"], condition["reason"]) == ("False", "Unsupported")

    run(go)


def test_a_tainted_node_is_told_in_the_pods_reason_and_a_tolerating_pod_binds() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {"l0": 1})
        node = api.nodes.store["l0-n0"]
        tainted = json.loads(json.dumps(node))
        tainted["spec"]["taints"] = [{"key": "gpu", "value": "broken", "effect": "NoSchedule"}]
        api.add_node(tainted)
        api.add_pod(gpu_pod("plain", gpus=1))
        await cycle(api, binder)
        assert bound_to(api, "plain") is None
        (event,) = events_on(api, "plain")
        assert "1 node excluded by taint gpu=broken:NoSchedule" in event["message"]
        ok = gpu_pod("tolerant", gpus=1)
        ok["spec"]["tolerations"] = [{"key": "gpu", "operator": "Exists"}]
        api.add_pod(ok)
        await cycle(api, binder)
        assert bound_to(api, "tolerant") == "l0-n0"
        assert binder.audit() == []

    run(go)


def test_a_new_leader_binds_the_backlog_it_found_without_waiting_for_news(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The binder starts on a replica that just took the lead, its caches already full:
    its first pass must not wait for a pod or node event (a quiet backlog sends none)."""
    monkeypatch.setattr(binder_module, "IDLE_CYCLE_SECONDS", 3600.0)

    async def go() -> None:
        api = FakeApi()
        runtime = Runtime(client=api, nodes=api.nodes, pods=api.pods)  # type: ignore[arg-type]
        runtime.feed_ledger()
        api.add_node(gpu_node("n0", gpus=8, leaf="l0"))
        api.add_pod(gpu_pod("waiting"))
        await api.settle()
        binder = Binder(runtime, Verdicts())
        task = asyncio.create_task(binder.run())
        try:
            for _ in range(50):
                await api.settle()
                await asyncio.sleep(0.01)
                if bound_to(api, "waiting"):
                    break
            assert bound_to(api, "waiting") == "n0"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    run(go)


def test_a_gang_that_must_mix_gpu_models_is_told_so() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {})
        api.add_node(gpu_node("a-n0", leaf="l0", model="NVIDIA-H100-80GB-HBM3"))
        api.add_node(gpu_node("b-n0", leaf="l0", model="NVIDIA-H200-141GB-HBM3e"))
        for i in range(2):
            api.add_pod(
                gpu_pod(
                    f"m{i}",
                    gpus=8,
                    labels={"egpu.io/gang": "m", "egpu.io/rank": str(i)},
                    annotations={"egpu.io/gang-size": "2"},
                )
            )
        await cycle(api, binder)
        assert bound_to(api, "m0") and bound_to(api, "m1")
        (event,) = [e for e in events_on(api, "m0") if e["reason"] == "MixedGPUModels"]
        assert "NVIDIA-H100-80GB-HBM3" in event["message"] and "mix" in event["message"]
        # One model holds a gang of one: nothing to say.
        api.add_pod(gpu_pod("solo", gpus=2))
        await cycle(api, binder)
        assert not [e for e in api.events if e["reason"] == "MixedGPUModels" and e is not event]

    run(go)


def test_the_rest_of_a_gang_keeps_the_gpu_model_its_bound_members_run_on() -> None:
    async def go() -> None:
        api = FakeApi()
        binder, _ = scene(api, {})
        api.add_node(gpu_node("a-n0", leaf="l0", model="NVIDIA-H100-80GB-HBM3"))
        api.add_node(gpu_node("b-n0", leaf="l0", model="NVIDIA-H200-141GB-HBM3e"))
        api.add_node(gpu_node("b-n1", leaf="l0", model="NVIDIA-H200-141GB-HBM3e"))
        labels = {"egpu.io/gang": "k"}
        size = {"egpu.io/gang-size": "2"}
        api.add_pod(
            gpu_pod(
                "k0", gpus=8, node="b-n0", labels={**labels, "egpu.io/rank": "0"}, annotations=size
            )
        )
        api.add_pod(gpu_pod("k1", gpus=8, labels={**labels, "egpu.io/rank": "1"}, annotations=size))
        await cycle(api, binder)
        assert bound_to(api, "k1") == "b-n1"  # not the H100 node, first by name
        assert not [e for e in api.events if e["reason"] == "MixedGPUModels"]

    run(go)
