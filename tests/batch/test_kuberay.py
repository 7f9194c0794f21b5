"""deploy/kuberay/rayjob.yaml: a RayJob a user can apply as it is (after setting the image).
No Kubernetes here, so what is checked is what can break without one: the manifest's structure,
every volume a container mounts being declared, and the entrypoint being a command line that
`imgscribe describe` itself accepts, with the Ray options it means."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest
import typer
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from imgscribe.cli import ClickException, _register, app

RAYJOB = Path(__file__).resolve().parents[2] / "deploy" / "kuberay" / "rayjob.yaml"


def _job() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


def _pods(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


def test_it_is_a_ray_job_on_a_ray_version_imgscribe_supports():
    job = _job()
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    version = job["spec"]["rayClusterSpec"]["rayVersion"]
    assert f"rayproject/ray:{version}-" in RAYJOB.read_text()  # the image it tells users to build FROM
    extras = tomllib.loads((RAYJOB.parents[2] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ray_requirement = next(Requirement(r) for r in extras["ray"] if r.startswith("ray"))
    assert Version(version) in ray_requirement.specifier, (version, str(ray_requirement))
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["IMGSCRIBE_MODELS"].startswith("/data/")


def test_every_mounted_volume_is_declared_and_every_pod_sees_the_data():
    for pod in _pods(_job()):
        declared = {volume["name"] for volume in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert set(mounts) <= declared, (container["name"], set(mounts) - declared)
            assert mounts.get("data") == "/data", container["name"]


def test_the_entrypoint_is_a_describe_command_line_on_ray():
    argv = shlex.split(_job()["spec"]["entrypoint"])
    assert argv[:2] == ["imgscribe", "describe"]
    command = _describe_command()
    with command.make_context("describe", argv[2:]) as ctx:  # raises on an unknown or malformed option
        params = ctx.params
    assert params["ray"] is True and params["ray_actors"] == 4 and params["ray_gpus"] == 1
    assert params["model"] == "llava:7b"
    assert all(path.startswith("/data/") for path in [*params["paths"], *params["out"], params["prompts"]])


def test_a_wrong_option_in_the_entrypoint_would_be_caught():
    with pytest.raises(ClickException, match="--ray-actorz"):
        _describe_command().make_context("describe", ["/data", "--ray-actorz", "4"])


def _describe_command():
    """The click command Typer builds for `imgscribe describe` (click or Typer's own copy of it)."""
    _register()
    return typer.main.get_command(app).commands["describe"]
