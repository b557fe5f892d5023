"""The API models: round-trips, defaults, and the CRDs and docs generated from them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from egpu import API_VERSION
from egpu.api import (
    ApiModel,
    Condition,
    GPUInferenceService,
    GPUInferenceServiceSpec,
    GPUTopology,
    GPUWorkload,
    GPUWorkloadSpec,
    GPUWorkloadStatus,
    ScalingPolicy,
    crdgen,
    docgen,
)
from egpu.api.kinds import KINDS
from egpu.api.schema import SchemaError, structural_schema, walk
from egpu.api.types import is_container_resource_name, is_label_key

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
MODELS: dict[str, type[ApiModel]] = {k.name: k.model for k in KINDS}

TEMPLATE = {"spec": {"containers": [{"name": "main", "image": "registry.local/egpu/sim:latest"}]}}
SOURCE = {"podMetrics": {"port": 8080}}


def crd_schemas() -> list[tuple[str, dict[str, Any]]]:
    return [(k.name, crdgen.build_openapi_schema(k)) for k in KINDS]


# --- models ------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_and_round_trip(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    model = MODELS[raw["kind"]]
    obj = model.model_validate(raw)
    assert model.model_validate(obj.to_wire()) == obj
    assert obj.to_wire()["apiVersion"] == API_VERSION


def test_the_examples_cover_every_kind() -> None:
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in EXAMPLES}
    assert kinds == set(MODELS)


def test_workload_defaults() -> None:
    spec = GPUWorkloadSpec.model_validate({"template": TEMPLATE})
    wire = spec.to_wire()
    assert wire["replicas"] == 1
    assert wire["gpusPerPod"] == 1
    assert wire["gang"] == {"policy": "AllOrNothing", "timeout": "5m"}
    assert wire["resize"] == {"mode": "Off", "onInfeasible": "Wait"}
    assert wire["repair"] == {"policy": "ReplaceMember", "maxRestarts": 3, "gracePeriod": "30s"}
    assert "topology" not in wire and "minReplicas" not in wire


def test_inference_defaults() -> None:
    spec = GPUInferenceServiceSpec.model_validate(
        {
            "template": TEMPLATE,
            "maxReplicas": 4,
            "scaling": {"metric": "Concurrency", "target": 8, "source": SOURCE},
        }
    )
    assert spec.min_replicas == 1
    assert spec.replicas is None
    assert spec.behavior.to_wire() == {
        "stableWindow": "60s",
        "panicWindow": "6s",
        "panicThreshold": 2.0,
        "scrapeInterval": "2s",
        "scaleUp": {"maxRate": 10.0, "cooldown": "0s"},
        "scaleDown": {"maxRate": 2.0, "stabilizationWindow": "5m"},
    }
    assert spec.warm_pool.size == 0
    assert spec.scaling.source.pod_metrics is not None
    assert spec.scaling.source.pod_metrics.path == "/metrics"


def test_fields_are_camel_case_on_the_wire_and_snake_case_in_python() -> None:
    policy = ScalingPolicy.model_validate(
        {"metric": "LatencySLO", "latencySLO": {"target": "500ms"}, "source": SOURCE}
    )
    assert policy.latency_slo is not None and policy.latency_slo.target == "500ms"
    wire = policy.to_wire()
    assert "latencySLO" in wire and "podMetrics" in wire["source"]
    # Python names work as input too.
    assert ScalingPolicy(metric="Concurrency", target="8", source=SOURCE).target == "8"


@pytest.mark.parametrize(
    ("written", "stored"), [(2, "2"), ("500m", "500m"), ("1.5Gi", "1.5Gi"), (0, "0")]
)
def test_quantities_accept_integers_and_strings(written: Any, stored: str) -> None:
    bounds = {"min": written, "max": 64, "step": "500m"}
    spec = GPUWorkloadSpec.model_validate(
        {"template": TEMPLATE, "resize": {"mode": "Auto", "cpu": bounds}}
    )
    assert spec.resize.cpu is not None and spec.resize.cpu.min == stored


@pytest.mark.parametrize("bad", [-1, "lots", "1.5 Gi", "-2", True])
def test_quantities_refuse_what_is_not_one(bad: Any) -> None:
    with pytest.raises(ValidationError):
        GPUWorkloadSpec.model_validate(
            {"template": TEMPLATE, "resize": {"mode": "Auto", "cpu": {"min": bad, "max": 4}}}
        )


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"gpusPerPod": 0}, "gpusPerPod"),
        ({"gpusPerPod": 65}, "gpusPerPod"),
        ({"replicas": 0}, "replicas"),
        ({"gang": {"policy": "Most"}}, "policy"),
        ({"gang": {"timeout": "5 minutes"}}, "timeout"),
        ({"topology": {"required": "leaf switch"}}, "required"),
        ({"gpuModel": "NVIDIA H100"}, "gpuModel"),
        ({"replica": 2}, "replica"),  # typo: unknown fields are refused
        ({"template": {"spec": {"containers": []}}}, "containers"),
    ],
)
def test_the_models_refuse_what_the_schema_refuses(patch: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        GPUWorkloadSpec.model_validate({"template": TEMPLATE, **patch})
    assert field in str(err.value)


def test_the_pod_template_keeps_fields_it_does_not_model() -> None:
    template = {
        "metadata": {
            "labels": {"app": "x", "tier": ""},
            "annotations": {"Example.com/Owner": "ml team"},
            "generateName": "ignored-",
        },
        "spec": {
            "nodeSelector": {"a": "b"},
            "schedulerName": "default-scheduler",
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "env": [{"name": "A", "value": "1"}],
                    "resources": {
                        "requests": {"cpu": 2, "memory": "1Gi", "nvidia.com/gpu": 1},
                        "limits": {"cpu": "2.5", "hugepages-2Mi": "1Gi"},
                        "claims": [{"name": "gpu"}],
                    },
                    "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
                }
            ],
            "initContainers": [{"name": "setup", "image": "i", "restartPolicy": "Always"}],
        },
    }
    spec = GPUWorkloadSpec.model_validate({"template": template})
    # Quantities stay as written (an integer is not turned into a string).
    assert spec.to_wire()["template"] == template


def _container(**fields: Any) -> dict[str, Any]:
    return {"template": {"spec": {"containers": [{"name": "c", "image": "i", **fields}]}}}


def _pod_metadata(**metadata: Any) -> dict[str, Any]:
    return {"template": {**TEMPLATE, "metadata": metadata}}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (_container(resources={"requests": {"cpu": "abc"}}), "'abc' is not a non-negative"),
        (_container(resources={"limits": {"memory": -1}}), "-1 is not a non-negative"),
        (_container(resources={"requests": {"cpu": 0.5}}), "an integer or a string"),
        (_container(resources={"requests": {"cpu": True}}), "an integer or a string"),
        (_container(resources={"requests": {"cpus": 2}}), "unknown resource 'cpus'"),
        (_container(resources={"requests": {"storage": "1Gi"}}), "unknown resource 'storage'"),
        (_container(resizePolicy=[{"resourceName": "gpu", "restartPolicy": "NotRequired"}]),
         "resourceName"),
        (_pod_metadata(labels={"app name": "x"}), "invalid label key 'app name'"),
        (_pod_metadata(labels={"app": "a b"}), "should match pattern"),
        (_pod_metadata(labels={"app": "a" * 64}), "at most 63 characters"),
        (_pod_metadata(labels={"version": 2}), "valid string"),
        (_pod_metadata(annotations={"a/b/c": "x"}), "invalid annotation key 'a/b/c'"),
        (_pod_metadata(labels={f"l{i}": "x" for i in range(65)}), "at most 64 items"),
    ],
)  # fmt: skip
def test_the_pod_template_refuses_what_its_pods_would(spec: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        GPUWorkloadSpec.model_validate(spec)
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("cpu", True),
        ("memory", True),
        ("ephemeral-storage", True),
        ("hugepages-1Gi", True),
        ("nvidia.com/gpu", True),
        ("example.com/nic_a", True),
        ("gpu", False),
        ("storage", False),
        ("nvidia.com/", False),
        ("Nvidia.com/gpu", False),
    ],
)
def test_container_resource_names(name: str, valid: bool) -> None:
    assert is_container_resource_name(name) is valid


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("egpu.io/leaf", True),
        ("kubernetes.io/hostname", True),
        ("topology.kubernetes.io/zone", True),
        ("rack", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("egpu.io/", False),
        ("/leaf", False),
        ("Egpu.IO/leaf", False),
        ("leaf switch", False),
        ("-leaf", False),
        ("a/b/c", False),
        (f"{'a' * 254}/leaf", False),
    ],
)
def test_label_keys(key: str, valid: bool) -> None:
    assert is_label_key(key) is valid


def test_status_round_trips_with_rfc3339_times() -> None:
    status = GPUWorkloadStatus.model_validate(
        {
            "phase": "Running",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "AllMembersReady",
                    "lastTransitionTime": "2026-01-02T03:04:05Z",
                    "observedGeneration": 2,
                }
            ],
            "placements": [
                {"pod": "job-0", "rank": 0, "node": "gpu-b0-l0-n0", "gpus": [0, 1],
                 "domain": {"egpu.io/leaf": "b0-l0"}},
            ],
            "readyReplicas": 1,
        }
    )  # fmt: skip
    wire = status.to_wire()
    assert wire["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert wire["placements"][0]["domain"] == {"egpu.io/leaf": "b0-l0"}
    assert GPUWorkloadStatus.model_validate(wire) == status
    with pytest.raises(ValidationError):
        Condition.model_validate({"type": "Ready", "status": "Maybe", "reason": "X",
                                  "lastTransitionTime": "2026-01-02T03:04:05Z"})  # fmt: skip


def test_kinds_carry_the_project_api_version() -> None:
    template = {"template": TEMPLATE}
    assert GPUWorkload(spec=GPUWorkloadSpec.model_validate(template)).api_version == API_VERSION
    assert GPUTopology.model_validate({"spec": {"levels": [{"nodeLabel": "a"}]}}).kind == (
        "GPUTopology"
    )
    assert GPUInferenceService.model_fields["api_version"].default == API_VERSION


# --- generated CRDs -----------------------------------------------------------------


def test_the_generator_is_deterministic() -> None:
    assert crdgen.rendered_files() == crdgen.rendered_files()
    assert docgen.render() == docgen.render()


def test_checked_in_crds_match_the_models() -> None:
    assert crdgen.drift(REPO / "crds") == "", "run: python -m egpu.api.crdgen --out crds/"


def test_checked_in_api_reference_matches_the_models() -> None:
    docs = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert docs == docgen.render(), "run: python -m egpu.api.docgen > docs/api.md"


def test_check_mode_fails_with_a_diff_when_a_file_drifts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    capsys.readouterr()

    target = tmp_path / "egpu.io_gpuworkloads.yaml"
    target.write_text(target.read_text().replace("maximum: 64", "maximum: 128"))
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert "-                maximum: 128" in out.out and "+                maximum: 64" in out.out
    assert "stale" in out.err

    crdgen.main(["--out", str(tmp_path)])
    (tmp_path / "egpu.io_gpuold.yaml").write_text("kind: CustomResourceDefinition\n")
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    assert "no model produces this file" in capsys.readouterr().out


def test_crds_name_the_kinds_with_subresources_and_category() -> None:
    for kind in KINDS:
        crd = yaml.safe_load(crdgen.render(kind))
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{kind.plural}.egpu.io"
        assert spec["names"]["categories"] == ["egpu"]
        assert spec["names"]["shortNames"]
        version = spec["versions"][0]
        assert version["subresources"]["status"] == {}
        assert ("scale" in version["subresources"]) == (kind.name != "GPUTopology")
        columns = {c["name"] for c in version["additionalPrinterColumns"]}
        assert "Age" in columns
    workload = yaml.safe_load(crdgen.render(KINDS[0]))["spec"]
    assert workload["scope"] == "Namespaced"
    assert workload["versions"][0]["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


@pytest.mark.parametrize(("kind", "schema"), crd_schemas(), ids=[k.name for k in KINDS])
def test_schemas_are_structural(kind: str, schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        where = f"{kind}: {path or '<root>'}"
        assert "$ref" not in node and "$defs" not in node, where
        assert "title" not in node, where
        if "anyOf" in node:  # only int-or-string may use it, never `null`
            assert node.get("x-kubernetes-int-or-string") is True, where
            assert {"type": "null"} not in node["anyOf"], where
        else:
            assert "type" in node, where
        if "properties" in node:
            assert node["type"] == "object", where
            assert "additionalProperties" not in node, where
        assert node.get("nullable") is not True, where
        assert node.get("default", "") is not None, where
        if node.get("type") == "array":
            assert node.get("x-kubernetes-list-type") in ("atomic", "set", "map"), where


@pytest.mark.parametrize(("kind", "schema"), crd_schemas(), ids=[k.name for k in KINDS])
def test_every_field_is_described(kind: str, schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        for name, sub in node.get("properties", {}).items():
            if path == "" and name == "metadata":
                continue  # the server owns ObjectMeta's schema
            assert sub.get("description"), f"{kind}: {path}.{name}"


_SELF_PATH = re.compile(r"\bself((?:\.[A-Za-z_]\w*(?![\w(]))*)")  # stop before a method


def _resolve(node: dict[str, Any], dotted: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = node
    for name in filter(None, dotted.split(".")):
        found = found.get("properties", {}).get(name) if found is not None else None
    return found


@pytest.mark.parametrize(("kind", "schema"), crd_schemas(), ids=[k.name for k in KINDS])
def test_every_rule_has_a_message_and_bounded_inputs(kind: str, schema: dict[str, Any]) -> None:
    """The API server refuses a rule whose cost it cannot bound: every string, list or
    map a rule (or its message expression) reads needs a maxLength, maxItems or
    maxProperties. A fieldPath must name a real field."""
    rules = 0
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            where = f"{kind}: {path}: {rule['rule']}"
            assert rule.get("message"), where
            if "fieldPath" in rule:
                assert _resolve(node, rule["fieldPath"]) is not None, where
            expressions = rule["rule"] + " " + rule.get("messageExpression", "")
            for match in _SELF_PATH.finditer(expressions):
                read = _resolve(node, match.group(1))
                assert read is not None, f"{where}: no field {match.group(1)}"
                if read.get("type") == "string" and "enum" not in read:
                    assert "maxLength" in read, f"{where}: {match.group(1)} unbounded"
                if read.get("x-kubernetes-int-or-string"):
                    assert "maxLength" in read, f"{where}: {match.group(1)} unbounded"
                if read.get("type") == "array":
                    assert "maxItems" in read, f"{where}: {match.group(1)} unbounded"
                if isinstance(read.get("additionalProperties"), dict):
                    assert "maxProperties" in read, f"{where}: {match.group(1)} unbounded"
    assert rules > 0


def test_the_crds_spell_every_shared_schema_out() -> None:
    """Two fields of one type (containers, initContainers) share schema objects; YAML
    anchors and aliases would make the CRDs unreadable for a person."""
    for text in crdgen.rendered_files().values():
        assert "&id0" not in text and "*id0" not in text


def test_the_api_reference_says_what_the_operator_checks_and_replaces() -> None:
    docs = docgen.render()
    assert (
        "the operator reports TopologyResolved=False (reason PreferredNotNarrower) and "
        "creates no pods" in docs
    )
    assert (
        "| `template.spec.schedulerName` | string, ≤ 253 chars |  | Replaced by "
        "egpu-scheduler on every pod" in docs
    )
    assert "`spec.template.spec.nodeName` | nodeName is not allowed" in docs


def test_there_are_at_least_thirty_distinct_rules() -> None:
    messages = {
        rule["message"]
        for _, schema in crd_schemas()
        for _, node in walk(schema)
        for rule in node.get("x-kubernetes-validations", [])
    }
    assert len(messages) >= 30


def test_a_union_is_refused_by_the_schema_converter() -> None:
    class Bad(BaseModel):
        value: int | str

    with pytest.raises(SchemaError, match="union"):
        structural_schema(Bad)


def test_optional_fields_are_plain_types_not_null_unions() -> None:
    schema = structural_schema(GPUWorkloadSpec)
    assert schema["properties"]["minReplicas"] == {
        "description": GPUWorkloadSpec.model_fields["min_replicas"].description,
        "type": "integer",
        "minimum": 1,
        "maximum": 4096,
    }
    assert "required" not in schema["properties"]["topology"] or (
        "topologyName" not in schema["properties"]["topology"]["required"]
    )
