"""Artefact locality: what nodes hold and pods load at start, the score that prefers nodes
holding it, the start path written with the Binding, and the Cached slots left."""

from __future__ import annotations

import asyncio
import copy
import gc
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from egpu.controllers.binder import Binder, Step, binding_annotations
from egpu.controllers.runtime import Runtime
from egpu.domain import artefacts as artefacts_module
from egpu.domain.artefacts import NO_ARTEFACTS, intern_artefacts, parse_artefact_keys
from egpu.domain.gang import GangRequest
from egpu.domain.labels import (
    ARTEFACTS_ANNOTATION,
    CACHED_ARTEFACTS_ANNOTATION,
    START_PATH_ANNOTATION,
    START_PATH_CACHED,
    START_PATH_COLD,
)
from egpu.domain.node import Node, node_from_kubernetes
from egpu.domain.placement import Placement, PodAssignment
from egpu.domain.pod import RecordedPlan
from egpu.domain.scheduling import NodeConstraints, PreferredTerm, Requirement, SelectorTerm, Taint
from egpu.domain.topology import Topology
from egpu.engines.binding import gang_request, gangs_to_place, pod_slots_on, shape_key, start_path
from egpu.engines.placement import ClusterLedger, place_gang
from egpu.engines.placement.filters import (
    ARTEFACT_LOCALITY_WEIGHT,
    PARTIAL_LOCALITY_WEIGHT,
    locality_score,
)
from egpu.state.ledger_sync import LedgerSync
from egpu.state.pods import read_pod
from fakeapi import FakeApi
from objects import gpu_node, gpu_pod

pytestmark = pytest.mark.unit

BLOCK, LEAF, HOST = "egpu.io/block", "egpu.io/leaf", "kubernetes.io/hostname"
TOPOLOGY = Topology(levels=(BLOCK, LEAF, HOST))
IMAGE = "registry.example/llm/vllm:0.6.3"
MODEL = "llama-3-8b@r2"
SOFT = Taint("spot", "true", "PreferNoSchedule")


def node(
    name: str,
    leaf: str = "l0",
    block: str = "b0",
    *,
    artefacts: tuple[str, ...] = (),
    taints: tuple[Taint, ...] = (),
    gpus: int = 8,
    labels: Mapping[str, str] | None = None,
) -> Node:
    return Node(
        name=name,
        labels={BLOCK: block, LEAF: leaf, HOST: name, **(labels or {})},
        cpu_millis=64_000,
        memory_bytes=512 * 2**30,
        gpu_count=gpus,
        gpu_model="H100",
        taints=taints,
        artefacts=intern_artefacts(artefacts),
    )


def request(pods: int = 1, gpus: int = 8, **kw: Any) -> GangRequest:
    return GangRequest(gang_id="g", pod_count=pods, gpus_per_pod=gpus, **kw)


def nodes_of(result: object) -> list[str]:
    assert isinstance(result, Placement), result
    return [a.node for a in result.assignments]


# -- reading ---------------------------------------------------------------------------


def test_artefact_keys_are_read_stripped_without_empties_or_repeats() -> None:
    assert parse_artefact_keys(f" {IMAGE} ,, {MODEL},{IMAGE}, ") == (IMAGE, MODEL)
    assert parse_artefact_keys("") == ()
    assert parse_artefact_keys(" , ,") == ()
    assert parse_artefact_keys(None) == ()
    assert parse_artefact_keys(["not", "a", "string"]) == ()


def test_a_node_holds_its_annotated_keys_and_every_image_name_its_kubelet_lists() -> None:
    images = [
        {"names": [f"{IMAGE}", "registry.example/llm/vllm@sha256:abc"], "sizeBytes": 1},
        {"names": ["docker.io/library/nginx:1.27"]},
        {"sizeBytes": 5},  # no names
        "garbage",
    ]
    n = node_from_kubernetes(
        "n1",
        {},
        {CACHED_ARTEFACTS_ANNOTATION: f"{MODEL}, other@r1"},
        {"nvidia.com/gpu": "8"},
        images=images,
    )
    assert n.artefacts == {
        IMAGE,
        "registry.example/llm/vllm@sha256:abc",
        "docker.io/library/nginx:1.27",
        MODEL,
        "other@r1",
    }
    # exact names only: the short form the kubelet does not list is not held
    assert "nginx:1.27" not in n.artefacts


def test_nodes_that_hold_the_same_share_one_set_and_nodes_that_hold_none_share_none() -> None:
    def read(name: str, annotation: str | None, images: object = None) -> Node:
        annotations = {} if annotation is None else {CACHED_ARTEFACTS_ANNOTATION: annotation}
        return node_from_kubernetes(name, {}, annotations, {"nvidia.com/gpu": "8"}, images=images)

    a, b = read("a", f"{MODEL},{IMAGE}"), read("b", f"{IMAGE}, {MODEL}")
    assert a.artefacts is b.artefacts
    c = read("c", MODEL, [{"names": [IMAGE]}])
    assert c.artefacts is a.artefacts
    assert read("d", None).artefacts is NO_ARTEFACTS
    assert read("e", " , ", "not a list").artefacts is NO_ARTEFACTS
    assert read("f", None, [{"names": [None, 3]}]).artefacts is NO_ARTEFACTS


def test_a_shared_set_no_node_holds_any_more_is_dropped() -> None:
    key = frozenset({"only-here@r9"})
    held = intern_artefacts(["only-here@r9"])
    assert key in artefacts_module._INTERNED
    del held
    gc.collect()
    assert key not in artefacts_module._INTERNED


def test_a_pod_names_its_artefacts_and_a_malformed_value_stops_nothing() -> None:
    pod = gpu_pod("p", annotations={ARTEFACTS_ANNOTATION: f"{IMAGE}, ,{MODEL},"})
    facts = read_pod(pod)
    assert facts.artefacts == (IMAGE, MODEL) and facts.problem is None
    assert read_pod(gpu_pod("q")).artefacts == ()
    odd = read_pod(gpu_pod("r", annotations={ARTEFACTS_ANNOTATION: ",,, "}))
    assert odd.artefacts == () and odd.problem is None


def test_the_gang_request_carries_the_artefacts_and_its_shape_tells_them_apart() -> None:
    pods = [
        read_pod(gpu_pod("p", gpus=2, annotations={ARTEFACTS_ANNOTATION: IMAGE})),
    ]
    gangs, bad = gangs_to_place([("ns/pod:p", pods)], busy={})
    assert not bad
    with_them = gang_request(gangs[0], pods, 0, ())
    assert with_them.artefacts == (IMAGE,)
    plain = GangRequest(
        gang_id="other",
        pod_count=1,
        gpus_per_pod=2,
        cpu_millis_per_pod=with_them.cpu_millis_per_pod,
        memory_bytes_per_pod=with_them.memory_bytes_per_pod,
    )
    assert shape_key(plain) != shape_key(with_them)
    assert shape_key(plain) == shape_key(GangRequest(**{**_fields(with_them), "artefacts": ()}))


def _fields(r: GangRequest) -> dict[str, Any]:
    return {name: getattr(r, name) for name in r.__slots__}


# -- the score -------------------------------------------------------------------------


def test_locality_score_orders_all_above_some_above_none_and_below_a_soft_taint() -> None:
    held = frozenset({IMAGE, MODEL})
    assert locality_score((IMAGE, MODEL), held) == ARTEFACT_LOCALITY_WEIGHT
    assert locality_score((IMAGE, "other@r1"), held) == PARTIAL_LOCALITY_WEIGHT
    assert locality_score(("other@r1",), held) == 0
    assert locality_score((), held) == 0
    assert 0 < PARTIAL_LOCALITY_WEIGHT < ARTEFACT_LOCALITY_WEIGHT < 100


def test_the_gang_goes_to_the_node_holding_every_artefact_then_some_then_any() -> None:
    ledger = ClusterLedger(
        TOPOLOGY,
        [
            node("n1"),
            node("n2", artefacts=(IMAGE,)),
            node("n3", artefacts=(IMAGE, MODEL, "extra")),
            node("n4"),
        ],
    )
    for gang, expected in (("g1", "n3"), ("g2", "n2"), ("g3", "n1")):
        # n3 first; once it is full, n2 that holds some; then the engine's own order
        result = place_gang(ledger, replace(request(artefacts=(IMAGE, MODEL)), gang_id=gang))
        assert nodes_of(result) == [expected]
        assert isinstance(result, Placement)
        ledger.reserve(result)


def test_a_gang_that_fits_no_cached_nodes_whole_goes_where_it_fits() -> None:
    ledger = ClusterLedger(
        TOPOLOGY,
        [node("a1", "la", artefacts=(IMAGE,)), node("b1", "lb"), node("b2", "lb")],
    )
    # two pods of 8 GPUs: the cached leaf holds one, so the other leaf takes the gang
    result = place_gang(ledger, request(pods=2, artefacts=(IMAGE,), required_level=LEAF))
    assert sorted(nodes_of(result)) == ["b1", "b2"]
    # a partial gang on the cached node alone loses to the whole gang elsewhere
    partial = place_gang(ledger, request(pods=2, min_members=1, artefacts=(IMAGE,)))
    assert len(nodes_of(partial)) == 2


def test_locality_never_costs_a_gang_its_compactness() -> None:
    # one cached node in each of two leaves; leaf lc holds the whole gang of two
    nodes = [
        node("a1", "la", artefacts=(IMAGE,)),
        node("b1", "lb", artefacts=(IMAGE,)),
        node("c1", "lc"),
        node("c2", "lc"),
    ]
    ledger = ClusterLedger(TOPOLOGY, nodes)
    result = place_gang(ledger, request(pods=2, artefacts=(IMAGE,)))
    assert sorted(nodes_of(result)) == ["c1", "c2"]
    assert isinstance(result, Placement) and result.level == LEAF
    # equally compact: the leaf whose nodes hold the image wins over the first leaf
    nodes = [node("a1", "la"), node("a2", "la"), node("b1", "lb", artefacts=(IMAGE,))]
    nodes.append(node("b2", "lb", artefacts=(IMAGE,)))
    ledger = ClusterLedger(TOPOLOGY, nodes)
    assert sorted(nodes_of(place_gang(ledger, request(pods=2, artefacts=(IMAGE,))))) == [
        "b1",
        "b2",
    ]
    assert sorted(nodes_of(place_gang(ledger, request(pods=2)))) == ["a1", "a2"]


def test_a_lone_pod_on_a_cached_node_keeps_its_levels_and_domain() -> None:
    nodes = [node("a1", "la"), node("a2", "la", artefacts=(IMAGE,)), node("b1", "lb")]
    nodes.append(node("b2", "lb", artefacts=(IMAGE,)))
    ledger = ClusterLedger(TOPOLOGY, nodes)
    result = place_gang(
        ledger, request(artefacts=(IMAGE,), required_level=LEAF, preferred_level=LEAF)
    )
    assert isinstance(result, Placement)
    assert nodes_of(result) == ["a2"] and result.level == HOST and result.preferred_met
    assert result.assignments[0].domain == {BLOCK: "b0", LEAF: "la", HOST: "a2"}
    assert dict(result.domain) == {BLOCK: "b0", LEAF: "la", HOST: "a2"}
    inside = place_gang(ledger, request(artefacts=(IMAGE,), within=("b0", "lb")))
    assert nodes_of(inside) == ["b2"]
    assert not ledger.verify()


def test_a_soft_taint_outweighs_holding_the_artefacts() -> None:
    ledger = ClusterLedger(
        TOPOLOGY,
        [node("n1", artefacts=(IMAGE, MODEL), taints=(SOFT,)), node("n2")],
    )
    assert nodes_of(place_gang(ledger, request(artefacts=(IMAGE, MODEL)))) == ["n2"]
    # among tainted nodes alike, the one that holds them still wins
    ledger = ClusterLedger(
        TOPOLOGY,
        [node("n1", taints=(SOFT,)), node("n2", artefacts=(IMAGE,), taints=(SOFT,))],
    )
    assert nodes_of(place_gang(ledger, request(artefacts=(IMAGE,)))) == ["n2"]


def test_inside_a_tier_the_tightest_node_still_wins() -> None:
    nodes = [
        node("a0", "la", gpus=4),  # the tightest fit, but it holds nothing
        node("a1", "la", artefacts=(IMAGE,)),
        node("b1", "lb", artefacts=(IMAGE,), gpus=4),
    ]
    ledger = ClusterLedger(TOPOLOGY, nodes)
    assert nodes_of(place_gang(ledger, request(gpus=4, artefacts=(IMAGE,)))) == ["b1"]
    # with both cached nodes alike, the engine's order between them
    nodes[2] = node("b1", "lb", artefacts=(IMAGE,))
    ledger = ClusterLedger(TOPOLOGY, nodes)
    assert nodes_of(place_gang(ledger, request(gpus=4, artefacts=(IMAGE,)))) == ["a1"]


def test_without_artefacts_the_placement_is_what_it_was() -> None:
    layout = [("a1", "la"), ("a2", "la"), ("b1", "lb"), ("b2", "lb"), ("c1", "lc")]
    plain = ClusterLedger(TOPOLOGY, [node(n, leaf) for n, leaf in layout])
    cached = ClusterLedger(
        TOPOLOGY, [node(n, leaf, artefacts=(IMAGE,) if n != "a1" else ()) for n, leaf in layout]
    )
    for ask in (request(), request(pods=2), request(pods=3, gpus=4), request(gpus=2)):
        assert place_gang(plain, ask) == place_gang(cached, ask)
    # artefacts no node holds change nothing either
    unknown = request(pods=2, artefacts=("nowhere@r0",))
    assert nodes_of(place_gang(cached, unknown)) == nodes_of(place_gang(plain, request(pods=2)))


def test_preferences_and_locality_add_up_when_most_nodes_score() -> None:
    prefer = NodeConstraints(
        preferred=(PreferredTerm(10, SelectorTerm((Requirement("zone", "In", ("z1",)),))),)
    )
    holds = {"n1": (), "n2": (IMAGE,), "n3": (IMAGE,), "n4": (IMAGE,), "n5": (IMAGE,)}
    nodes = [node(n, labels={"zone": "z1"}, artefacts=a) for n, a in holds.items()]
    ledger = ClusterLedger(TOPOLOGY, nodes)
    ask = request(pods=3, constraints=(prefer,), artefacts=(IMAGE,))
    # most nodes are in the best tier: the others are left out rather than copied
    assert nodes_of(place_gang(ledger, ask)) == ["n2", "n3", "n4"]
    assert nodes_of(place_gang(ledger, replace(ask, artefacts=()))) == ["n1", "n2", "n3"]
    # the best tier cannot take the whole gang: it goes on every node
    whole = place_gang(ledger, replace(ask, pod_count=5))
    assert sorted(nodes_of(whole)) == ["n1", "n2", "n3", "n4", "n5"]
    assert not ledger.verify()


def test_the_ledger_keeps_its_artefact_index_through_updates_and_removals() -> None:
    ledger = ClusterLedger(TOPOLOGY, [node("n1", artefacts=(IMAGE,)), node("n2")])
    tree = ledger.tree
    assert set(tree.artefact_sets) == {IMAGE}
    ledger.update_node(node("n2", artefacts=(IMAGE,)))
    assert len(tree.by_artefacts) == 1 and set(next(iter(tree.by_artefacts.values()))) == {
        "n1",
        "n2",
    }
    ledger.update_node(node("n1", artefacts=(MODEL,)))
    assert set(tree.artefact_sets) == {IMAGE, MODEL}
    ledger.remove_node("n2")
    assert set(tree.artefact_sets) == {MODEL}
    ledger.update_node(node("n1"))
    assert tree.by_artefacts == {} and tree.artefact_sets == {}
    tx = ledger.begin()  # undone on rollback like any other node change
    ledger.update_node(node("n1", artefacts=(IMAGE,)))
    assert ledger.node_artefacts("n1") == {IMAGE} and set(tree.artefact_sets) == {IMAGE}
    tx.rollback()
    assert ledger.node_artefacts("n1") == NO_ARTEFACTS
    assert tree.by_artefacts == {} and tree.artefact_sets == {}


def test_a_node_change_of_its_images_alone_reaches_the_ledger() -> None:
    sync = LedgerSync(TOPOLOGY)
    raw = gpu_node("n1")
    sync.node_changed(None, raw)
    assert sync.ledger.node_artefacts("n1") == NO_ARTEFACTS
    pulled = copy.deepcopy(raw)
    pulled["status"]["images"] = [{"names": [IMAGE], "sizeBytes": 10}]
    sync.node_changed(raw, pulled)
    assert sync.ledger.node_artefacts("n1") == {IMAGE}
    annotated = copy.deepcopy(pulled)
    annotated["metadata"]["annotations"][CACHED_ARTEFACTS_ANNOTATION] = MODEL
    sync.node_changed(pulled, annotated)
    assert sync.ledger.node_artefacts("n1") == {IMAGE, MODEL}
    assert sync.ledger.free_gpus_holding((IMAGE, MODEL)) == [8]


# -- start path, slots, the Binding ---------------------------------------------------------


def test_the_start_path_is_cached_only_when_the_node_holds_every_artefact() -> None:
    held = frozenset({IMAGE, MODEL})
    assert start_path((IMAGE, MODEL), held) == START_PATH_CACHED
    assert start_path((IMAGE,), held) == START_PATH_CACHED
    assert start_path((IMAGE, "other@r1"), held) == START_PATH_COLD
    assert start_path((IMAGE,), NO_ARTEFACTS) == START_PATH_COLD
    assert start_path((), held) is None


def test_the_binding_names_the_start_path_only_for_pods_with_artefacts() -> None:
    facts = read_pod(gpu_pod("p", annotations={ARTEFACTS_ANNOTATION: IMAGE}))
    a = PodAssignment(0, "n1", (0,), {HOST: "n1"})
    plan = RecordedPlan(facts.uid, "n1", (0,), {HOST: "n1"}, "plan", 1)
    assert START_PATH_ANNOTATION not in binding_annotations(Step(facts, a, plan))
    cached = binding_annotations(Step(facts, a, plan, START_PATH_CACHED))
    assert cached[START_PATH_ANNOTATION] == START_PATH_CACHED


def test_pod_slots_on_nodes_count_whole_pods() -> None:
    assert pod_slots_on([8, 3, 4], 4) == 3
    assert pod_slots_on([], 1) == 0
    with pytest.raises(ValueError):
        pod_slots_on([8], 0)


def scene(api: FakeApi) -> Binder:
    runtime = Runtime(client=api, nodes=api.nodes, pods=api.pods)  # type: ignore[arg-type]
    runtime.feed_ledger()
    return Binder(runtime)


async def cycle(api: FakeApi, binder: Binder) -> None:
    await api.settle()
    await binder.cycle()
    await api.settle()
    await asyncio.sleep(0.01)
    await api.settle()


def test_the_binder_writes_the_start_path_and_counts_cached_slots() -> None:
    async def go() -> None:
        api = FakeApi()
        binder = scene(api)
        held = {CACHED_ARTEFACTS_ANNOTATION: f"{IMAGE},{MODEL}"}
        api.add_node(gpu_node("n1", leaf="l0"))
        api.add_node(gpu_node("n2", leaf="l1", **held))
        api.add_node(gpu_node("n3", leaf="l2", model="NVIDIA-A100", **held))
        api.add_node(gpu_node("n4", leaf="l3", ready=False, **held))  # not schedulable
        await api.settle()
        assert binder.cached_pod_slots(4, None, (IMAGE, MODEL)) == 4
        assert binder.cached_pod_slots(4, "H100", (IMAGE, MODEL)) == 2
        assert binder.cached_pod_slots(4, None, (IMAGE, "nowhere@r0")) == 0
        assert binder.cached_pod_slots(4, None, ()) == 0
        api.add_pod(
            gpu_pod(
                "warm",
                gpus=4,
                annotations={
                    ARTEFACTS_ANNOTATION: f"{IMAGE},{MODEL}",
                    "egpu.io/gpu-model": "H100",
                },
            )
        )
        api.add_pod(gpu_pod("cold", gpus=4, annotations={ARTEFACTS_ANNOTATION: "nowhere@r0"}))
        api.add_pod(gpu_pod("plain", gpus=1))
        await cycle(api, binder)
        warm, cold, plain = (api.pod("ns", n) for n in ("warm", "cold", "plain"))
        assert warm is not None and cold is not None and plain is not None
        assert warm["spec"]["nodeName"] == "n2"
        assert warm["metadata"]["annotations"][START_PATH_ANNOTATION] == START_PATH_CACHED
        assert cold["spec"].get("nodeName")
        assert cold["metadata"]["annotations"][START_PATH_ANNOTATION] == START_PATH_COLD
        assert plain["spec"].get("nodeName")
        assert START_PATH_ANNOTATION not in plain["metadata"]["annotations"]
        assert binder.cached_pod_slots(4, "H100", (IMAGE, MODEL)) == 1

    asyncio.run(go())
