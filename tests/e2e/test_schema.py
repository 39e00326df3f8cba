"""The policy format's JSON Schema (`warden schema`, checked in as config/warden.schema.json):
every policy in config/ and deploy/ validates against it, and it refuses what `warden check`
refuses for shape (unknown fields, wrong types, wrong version)."""

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import standard_policy
from harness import run_warden_cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "config/warden.schema.json"
POLICIES = sorted(p for p in (ROOT / "config").rglob("*.y*ml") if not p.name.startswith("kustomization."))


class PolicyLoader(yaml.SafeLoader):
    """YAML as Warden and editors read it: an unquoted `2027-01-05T08:00:00Z` is a string (PyYAML
    would make it a datetime, a YAML 1.1 rule)."""


PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load(text):
    return yaml.load(text, Loader=PolicyLoader)


def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_command_prints_the_checked_in_schema():
    out = run_warden_cli("schema")
    assert out.returncode == 0 and out.stdout == SCHEMA_FILE.read_text()


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_policy_in_config_validates(path):
    assert not list(validator().iter_errors(load(path.read_text())))
    assert run_warden_cli("check", str(path)).returncode == 0


def test_every_policy_deploy_ships_validates():
    rendered = subprocess.run([shutil.which("kubectl") or "kubectl", "kustomize", str(ROOT / "deploy/overlays/example")],
                              capture_output=True, text=True, check=True).stdout
    maps = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap"
            and d["metadata"]["name"].startswith("warden-policy")]
    files = [text for m in maps for text in m["data"].values()]
    assert files
    for text in files:
        assert not list(validator().iter_errors(load(text)))


def test_the_schema_refuses_what_check_refuses(tmp_path):
    good = yaml.safe_load(standard_policy("http://127.0.0.1:9/v1"))
    assert not list(validator().iter_errors(good))
    typo = yaml.safe_load(standard_policy("http://127.0.0.1:9/v1"))
    typo["agents"]["app"]["modelz"] = typo["agents"]["app"].pop("models")
    wrong_version = {**good, "version": 2}
    wrong_type = yaml.safe_load(standard_policy("http://127.0.0.1:9/v1"))
    wrong_type["agents"]["app"]["limits"] = {"requests_per_minute": "lots"}
    bad_auth = yaml.safe_load(standard_policy("http://127.0.0.1:9/v1"))
    bad_auth["providers"]["openai"]["auth"] = "basic"
    for name, policy in [("typo", typo), ("version", wrong_version), ("type", wrong_type), ("auth", bad_auth)]:
        assert list(validator().iter_errors(policy)), name
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(policy))
        assert run_warden_cli("check", str(path)).returncode == 1, name
