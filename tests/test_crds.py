"""Static checks of the two CRDs in crds/ (no cluster needed).

* the files parse and declare what docs/reference.md agrees on (names, short names,
  category, status subresource, printer columns);
* the schemas are structural, bounded (maxItems on lists, maxLength on free strings) and keep
  unknown fields only where the contract says so;
* the shared invalid sweep configs in tests/cases/invalid/: every one that the plain OpenAPI
  part of the schema can refuse is refused by validating its ``spec`` with ``jsonschema``
  against the CRD schema converted to JSON Schema. The others need the CEL rules (checked by the
  real API server in tests/cluster) or the operator's engine (free-form ``spec.parameters``);
  ``SCHEMA_CATCHES`` / ``CEL_CATCHES`` / ``ENGINE_ONLY`` below say which is which, and a test
  fails when a case is added without being sorted into one of them.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_DIR = ROOT / "crds"
SWEEP_CRD = CRD_DIR / "sweeps.kubesweep.io.yaml"
RUN_CRD = CRD_DIR / "sweepruns.kubesweep.io.yaml"
CASES = Path(__file__).resolve().parent / "cases"
INVALID = CASES / "invalid"

# Case name -> the field its error must name (the case's message_names_field, checked below).
SCHEMA_CATCHES = {
    "bad-goal": "metric.goal",                       # enum
    "early-terminate-string": "early_terminate",     # type: object
    "empty-metric-name": "metric.name",              # minLength 1
    "eta-below-one": "early_terminate.eta",          # exclusiveMinimum 1
    "eta-one": "early_terminate.eta",                # exclusiveMinimum 1
    "min-iter-zero": "early_terminate.min_iter",     # minimum 1
    "negative-run-cap": "run_cap",                   # minimum 1
    "no-parameters": "parameters",                   # required
    "s-fractional": "early_terminate.s",             # type: integer
    "s-zero": "early_terminate.s",                   # minimum 1
    "typo-top-level": "early_terminte",              # unknown field (kubectl's strict field validation)
    "unknown-method": "method",                      # enum
    "unknown-type": "early_terminate.type",          # enum
}
# Refused at admission by an x-kubernetes-validations rule: the rule's scope and the text its
# message must contain.
CEL_CATCHES = {
    "bayes-no-metric": ("spec", "spec.metric is required when spec.method is bayes"),
    "no-metric": ("spec", "spec.metric is required when spec.early_terminate is set"),
    "max-iter-without-s": ("spec.early_terminate", "spec.early_terminate.s is required"),
    "no-iter-at-all": ("spec.early_terminate", "needs min_iter or max_iter"),
    "no-bands": ("spec.early_terminate", "spec.early_terminate.max_iter divided by eta"),
}
# spec.parameters is free-form (W&B parameter specs nest), so only the engine refuses these.
ENGINE_ONLY = {
    "empty-values",
    "grid-continuous",
    "log-uniform-values-nonpositive",
    "min-above-max",
    "q-zero",
    "unknown-distribution",
}

# Valid W&B configs that the schema must accept (besides tests/cases/hyperband/*.yaml).
VALID_SPECS = {
    "minimal-grid": {"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]}}},
    "min-iter": {
        "method": "random",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1}},
        "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3, "strict": True},
        "run_cap": 20,
    },
    "max-iter-fractional-eta": {
        "method": "bayes",
        "metric": {"name": "acc"},
        "parameters": {"opt": {"parameters": {"lr": {"value": 0.1}}}, "epochs": {"value": 27}},
        "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 1.5},
    },
    "kubesweep-fields": {
        "name": "mnist",
        "description": "demo",
        "method": "random",
        "metric": {"name": "loss", "goal": "maximize"},
        "parameters": {"lr": {"min": 0.0, "max": 1.0}},
        "command": ["${env}", "${interpreter}", "${program}", "${args}"],
        "program": "train.py",
        "parallelism": 4,
        "template": {"spec": {"containers": [{"name": "train", "image": "x",
                                              "resources": {"limits": {"nvidia.com/gpu": 1}}}]}},
        "stop_grace_period_seconds": 0,
        "metrics": {"source": "push", "container": "train"},
        "max_failed_runs": 0,
        "iterations_per_run": 10,
    },
}


# --------------------------------------------------------------------------- helpers

def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return yaml.safe_load(f)


def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    return v


def schema_of(crd: dict[str, Any]) -> dict[str, Any]:
    return version(crd)["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its dotted path ('[]' for list items, '{}' for map values)."""
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, child in enumerate(node.get(key) or []):
            yield from walk(child, f"{path}<{key}{i}>")
    if isinstance(node.get("not"), dict):
        yield from walk(node["not"], f"{path}<not>")


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes openAPIV3Schema node as a JSON Schema (draft 2020-12) node.

    Drops what jsonschema can't evaluate (x-kubernetes-validations, defaults, formats), turns
    OpenAPI 3.0's boolean exclusiveMinimum/Maximum into numbers, and closes objects that declare
    properties without preserving unknown fields: kubectl apply's default strict field
    validation refuses unknown fields there (and the API server would prune them otherwise).
    """
    out: dict[str, Any] = {}
    for key in ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern",
                "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
                "required"):
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if node.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("exclusiveMaximum") is True:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node:
            out[key] = [to_json_schema(n) for n in node[key]]
    if isinstance(node.get("not"), dict):
        out["not"] = to_json_schema(node["not"])
    return out


def spec_validator(crd_path: Path) -> jsonschema.protocols.Validator:
    spec_schema = to_json_schema(schema_of(load(crd_path))["properties"]["spec"])
    cls = jsonschema.Draft202012Validator
    cls.check_schema(spec_schema)
    return cls(spec_schema)


def names_field(err: jsonschema.ValidationError, field: str) -> bool:
    """Whether a jsonschema error points at `field` (dotted path relative to spec)."""
    path = ".".join(str(p) for p in err.absolute_path)
    if path == field:
        return True
    parent, _, last = field.rpartition(".")
    # `required` and `additionalProperties` errors sit on the parent and quote the key.
    return path == parent and f"'{last}'" in err.message


@functools.cache
def invalid_cases() -> dict[str, dict[str, Any]]:
    return {p.stem: load(p) for p in sorted(INVALID.glob("*.yaml"))}


@pytest.fixture(scope="module")
def sweep_crd() -> dict[str, Any]:
    return load(SWEEP_CRD)


@pytest.fixture(scope="module")
def run_crd() -> dict[str, Any]:
    return load(RUN_CRD)


@pytest.fixture(scope="module")
def sweep_spec_validator() -> jsonschema.protocols.Validator:
    return spec_validator(SWEEP_CRD)


# --------------------------------------------------------------------------- the CRDs

@pytest.mark.parametrize("path", [SWEEP_CRD, RUN_CRD], ids=lambda p: p.name)
def test_crd_parses_and_is_v1(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert len(docs) == 1, f"{path.name}: one CRD per file"
    crd = docs[0]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.{crd['spec']['group']}"
    assert path.name == f"{crd['metadata']['name']}.yaml"
    assert crd["spec"]["group"] == "kubesweep.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == ["kubesweep"]
    v = version(crd)
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}, "status subresource: spec and status are written separately"


def test_names(sweep_crd: dict[str, Any], run_crd: dict[str, Any]) -> None:
    s = sweep_crd["spec"]["names"]
    assert (s["kind"], s["plural"], s["singular"]) == ("Sweep", "sweeps", "sweep")
    assert "ksw" in s["shortNames"]
    r = run_crd["spec"]["names"]
    assert (r["kind"], r["plural"], r["singular"]) == ("SweepRun", "sweepruns", "sweeprun")
    assert r["shortNames"] == ["ksr"]


def resolve(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in json_path.strip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


PRINTER_COLUMNS = {
    SWEEP_CRD.name: [
        ("Phase", "string", ".status.phase"),
        ("Method", "string", ".spec.method"),
        ("Running", "integer", ".status.runs.running"),
        ("EarlyStopped", "integer", ".status.runs.earlyStopped"),
        ("Succeeded", "integer", ".status.runs.succeeded"),
        ("Failed", "integer", ".status.runs.failed"),
        ("Best", "number", ".status.best.value"),
        ("GPU-s saved", "number", ".status.gpuSecondsSaved"),
        ("Age", "date", ".metadata.creationTimestamp"),
        ("Message", "string", ".status.message"),
    ],
    RUN_CRD.name: [
        ("Sweep", "string", ".spec.sweep"),
        ("State", "string", ".status.state"),
        ("Iter", "integer", ".status.iteration"),
        ("Latest", "number", ".status.latest"),
        ("Best", "number", ".status.best"),
        ("Stop-Iter", "integer", ".status.decision.iteration"),
        ("Reason", "string", ".status.reason"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ],
}


@pytest.mark.parametrize("path", [SWEEP_CRD, RUN_CRD], ids=lambda p: p.name)
def test_printer_columns(path: Path) -> None:
    crd = load(path)
    cols = version(crd)["additionalPrinterColumns"]
    assert [(c["name"], c["type"], c["jsonPath"]) for c in cols] == PRINTER_COLUMNS[path.name]
    schema = schema_of(crd)
    for c in cols:
        if c["jsonPath"].startswith(".metadata."):
            continue
        node = resolve(schema, c["jsonPath"])
        assert node is not None, f"column {c['name']}: {c['jsonPath']} is not in the schema"
        assert node["type"] == c["type"], f"column {c['name']}: schema type {node['type']} != {c['type']}"
        assert "conditions" not in c["jsonPath"], "no column reads a condition"


@pytest.mark.parametrize("path", [SWEEP_CRD, RUN_CRD], ids=lambda p: p.name)
def test_schema_is_structural(path: Path) -> None:
    schema = schema_of(load(path))
    assert schema["type"] == "object"
    for where, node in walk(schema):
        assert "$ref" not in node, f"{where}: $ref is not allowed"
        if not (node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")):
            assert node.get("type"), f"{where or '<root>'}: no type (a structural schema types every node)"
        assert not ("properties" in node and "additionalProperties" in node), \
            f"{where}: properties and additionalProperties are mutually exclusive"
        assert node.get("additionalProperties", True) is not False, f"{where}: additionalProperties: false is forbidden"
        for key in ("allOf", "anyOf", "oneOf", "not"):
            assert key not in node, f"{where}: {key} is not used here (and may not set types)"
    # metadata may only be typed: the API server owns its schema.
    assert schema["properties"]["metadata"] == {"type": "object"}


PRESERVED = {
    SWEEP_CRD.name: {"spec.parameters", "spec.template", "spec.controller"},  # controller: W&B's, unused here
    RUN_CRD.name: {"spec.parameters"},
}


@pytest.mark.parametrize("path", [SWEEP_CRD, RUN_CRD], ids=lambda p: p.name)
def test_unknown_fields_preserved_only_where_agreed(path: Path) -> None:
    schema = schema_of(load(path))
    preserved = {w for w, n in walk(schema) if n.get("x-kubernetes-preserve-unknown-fields")}
    assert preserved == PRESERVED[path.name]


@pytest.mark.parametrize("path", [SWEEP_CRD, RUN_CRD], ids=lambda p: p.name)
def test_lists_and_strings_are_bounded(path: Path) -> None:
    schema = schema_of(load(path))
    for where, node in walk(schema):
        if where in ("apiVersion", "kind"):
            continue
        if node.get("type") == "array":
            assert "maxItems" in node, f"{where}: a list needs maxItems"
        if node.get("type") == "string" and "enum" not in node and node.get("format") != "date-time":
            assert "maxLength" in node, f"{where}: a string needs maxLength (or an enum)"


def test_defaults_only_on_kubesweep_fields(sweep_crd: dict[str, Any], run_crd: dict[str, Any]) -> None:
    """W&B's own defaults (goal, eta, strict) belong to the engine, not to the stored object."""
    sweep = {w: n["default"] for w, n in walk(schema_of(sweep_crd)) if "default" in n}
    assert sweep == {
        "spec.parallelism": 1,
        "spec.stop_grace_period_seconds": 30,
        "spec.metrics": {},
        "spec.metrics.source": "logs",
        "spec.max_failed_runs": 5,
    }
    assert not [w for w, n in walk(schema_of(run_crd)) if "default" in n]


def test_sweep_spec_fields(sweep_crd: dict[str, Any]) -> None:
    spec = schema_of(sweep_crd)["properties"]["spec"]
    p = spec["properties"]
    assert set(spec["required"]) == {"method", "parameters"}
    assert p["method"]["enum"] == ["grid", "random", "bayes"]
    assert p["metric"]["required"] == ["name"]
    assert p["metric"]["properties"]["name"]["minLength"] == 1
    assert p["metric"]["properties"]["goal"]["enum"] == ["minimize", "maximize"]
    assert p["parameters"]["type"] == "object" and p["parameters"]["minProperties"] == 1
    et = p["early_terminate"]
    assert et["required"] == ["type"] and et["properties"]["type"]["enum"] == ["hyperband"]
    for name in ("min_iter", "max_iter", "s"):
        assert et["properties"][name] == {**et["properties"][name], "type": "integer", "minimum": 1}
    eta = et["properties"]["eta"]
    assert (eta["type"], eta["minimum"], eta["exclusiveMinimum"]) == ("number", 1, True)
    assert et["properties"]["strict"]["type"] == "boolean"
    assert (p["parallelism"]["minimum"], p["parallelism"]["maximum"]) == (1, 1000)
    assert (p["stop_grace_period_seconds"]["minimum"], p["stop_grace_period_seconds"]["maximum"]) == (0, 3600)
    assert p["metrics"]["properties"]["source"]["enum"] == ["logs", "push"]
    assert p["max_failed_runs"]["minimum"] == 0
    assert p["iterations_per_run"]["minimum"] == 1
    assert p["run_cap"]["minimum"] == 1


def test_status_shapes(sweep_crd: dict[str, Any], run_crd: dict[str, Any]) -> None:
    st = schema_of(sweep_crd)["properties"]["status"]["properties"]
    assert st["phase"]["enum"] == ["Pending", "Running", "Succeeded", "Failed", "Invalid"]
    cond = st["conditions"]
    assert cond["x-kubernetes-list-type"] == "map" and cond["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in cond["items"]["required"], "a list-map key must be required"
    assert cond["items"]["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert set(cond["items"]["properties"]) == {"type", "status", "reason", "message",
                                                "lastTransitionTime", "observedGeneration"}
    assert set(st["runs"]["properties"]) == {"total", "pending", "running", "succeeded", "earlyStopped", "failed"}
    assert st["warnings"]["maxItems"] == 20
    assert set(st) == {"phase", "observedGeneration", "conditions", "runs", "best", "bands", "warnings",
                       "iterationsTrained", "iterationsSaved", "gpuSecondsUsed", "gpuSecondsSaved",
                       "nextIndex", "message"}
    rs = schema_of(run_crd)["properties"]["status"]["properties"]
    assert rs["state"]["enum"] == ["Pending", "Running", "Succeeded", "EarlyStopped", "Failed"]
    assert rs["bandValues"]["maxItems"] == 64
    assert set(rs) == {"state", "reason", "message", "iteration", "latest", "best", "bandValues", "rowsSeen",
                       "decision", "pod", "pushSeq", "startTime", "completionTime", "gpus", "gpuSeconds", "secondsPerIteration"}
    assert set(rs["decision"]["properties"]) == {"band", "value", "threshold", "runsAtBand", "iteration", "time"}
    run_spec = schema_of(run_crd)["properties"]["spec"]
    assert set(run_spec["properties"]) == {"sweep", "index", "parameters", "args"}


REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}


@pytest.mark.parametrize("path", [SWEEP_CRD, RUN_CRD], ids=lambda p: p.name)
def test_cel_rules_are_well_formed(path: Path) -> None:
    for where, node in walk(schema_of(load(path))):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["rule"].strip()
            assert rule.get("message") and "\n" not in rule["message"], f"{where}: every rule has a one-line message"
            assert re.search(r"spec\.\w+", rule["message"]), f"{where}: the message names the field: {rule['message']}"
            assert rule.get("reason", "FieldValueInvalid") in REASONS
            if "fieldPath" in rule:
                assert resolve(node, rule["fieldPath"]) is not None, f"{where}: fieldPath {rule['fieldPath']} must exist"


def test_cel_rules_cover_the_cross_field_cases(sweep_crd: dict[str, Any]) -> None:
    nodes = dict(walk(schema_of(sweep_crd)))
    for case, (scope, text) in CEL_CATCHES.items():
        messages = [r["message"] for r in nodes[scope].get("x-kubernetes-validations", [])]
        assert any(text in m for m in messages), f"{case}: no rule on {scope} with a message containing {text!r}"


# --------------------------------------------------------------------------- shared invalid cases

def test_every_invalid_case_is_classified() -> None:
    assert INVALID.is_dir() and list(INVALID.glob("*.yaml")), \
        f"{INVALID} is empty: copy the shared cases there (cases/invalid/*.yaml)"
    cases = set(invalid_cases())
    classified = set(SCHEMA_CATCHES) | set(CEL_CATCHES) | ENGINE_ONLY
    assert not set(SCHEMA_CATCHES) & set(CEL_CATCHES) and not (set(SCHEMA_CATCHES) | set(CEL_CATCHES)) & ENGINE_ONLY
    assert cases - classified == set(), "new invalid cases: sort them into SCHEMA_CATCHES, CEL_CATCHES or ENGINE_ONLY"
    assert classified - cases == set(), "classified cases that no longer exist"


@pytest.mark.parametrize("case", sorted(SCHEMA_CATCHES))
def test_schema_rejects_case(case: str, sweep_spec_validator: jsonschema.protocols.Validator) -> None:
    data = invalid_cases()[case]
    field = SCHEMA_CATCHES[case]
    assert data["expected"]["rejected"] is True
    assert data["expected"]["message_names_field"] == field
    errors = list(sweep_spec_validator.iter_errors(data["sweep"]))
    assert errors, f"{case}: the schema accepts a config that must be refused ({data['title']})"
    assert any(names_field(e, field) for e in errors), \
        f"{case}: no error names {field}: {[(list(e.absolute_path), e.message) for e in errors]}"


@pytest.mark.parametrize("case", sorted(set(CEL_CATCHES) | ENGINE_ONLY))
def test_schema_alone_accepts_case_left_to_cel_or_engine(case: str,
                                                         sweep_spec_validator: jsonschema.protocols.Validator) -> None:
    """Keeps the lists honest: if the plain schema starts refusing one, move it to SCHEMA_CATCHES."""
    data = invalid_cases()[case]
    assert data["expected"]["rejected"] is True
    errors = [e.message for e in sweep_spec_validator.iter_errors(data["sweep"])]
    assert errors == [], f"{case} is now refused by the plain schema: move it to SCHEMA_CATCHES ({errors})"


@functools.cache
def valid_specs() -> dict[str, Any]:
    specs = dict(VALID_SPECS)
    for p in sorted((CASES / "hyperband").glob("*.yaml")):
        specs[f"hyperband/{p.stem}"] = load(p)["sweep"]
    return specs


@pytest.mark.parametrize("name", sorted(valid_specs()))
def test_schema_accepts_valid_config(name: str, sweep_spec_validator: jsonschema.protocols.Validator) -> None:
    errors = [(list(e.absolute_path), e.message) for e in sweep_spec_validator.iter_errors(valid_specs()[name])]
    assert errors == []


def test_sweeprun_spec_schema() -> None:
    v = spec_validator(RUN_CRD)
    good = {"sweep": "mnist", "index": 3, "parameters": {"lr": 0.1, "opt": {"momentum": 0.9}},
            "args": ["--lr=0.1"]}
    assert list(v.iter_errors(good)) == []
    assert list(v.iter_errors({"sweep": "mnist"})), "index is required"
    assert list(v.iter_errors({**good, "index": -1}))
    assert list(v.iter_errors({**good, "args": "--lr=0.1"}))
