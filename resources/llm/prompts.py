"""The prompt registry: prompts are TOML files in the repository, versioned by content hash.

A use case is a folder under the prompt root (``serving/prompts/<use_case>/``) holding one file
per label: ``production.toml`` (required) and ``candidate.toml`` (optional). A file gives the
model, its parameters and the template. Its version is the hash of that content (label, comments
and description excluded), so promoting a candidate by copying it over ``production.toml`` keeps
its version. Every version ever seen is stored once in the registry folder, with a history of
which label pointed at it when, so the gateway can serve an approved version after the file has
moved on.
"""

import datetime
import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

LABELS = ("production", "candidate")
_REQUIRED = ("model", "parameters", "template")


class PromptFileError(ValueError):
    """A prompt file breaks the format; the message names the file and the field."""


@dataclass(frozen=True)
class PromptVersion:
    """One content-hashed prompt: model, parameters and template of a use case."""

    use_case: str
    label: str
    version: str
    model: str
    parameters: dict[str, Any]
    system: str
    user: str
    description: str
    source: str

    def messages(self, question: str, context: str) -> list[dict[str, str]]:
        """The chat messages for ``question`` with the retrieved ``context`` filled in."""
        fill = {"{context}": context, "{question}": question}
        rendered = []
        for role, template in (("system", self.system), ("user", self.user)):
            for placeholder, value in fill.items():
                template = template.replace(placeholder, value)
            rendered.append({"role": role, "content": template})
        return rendered

    def parameter(self, name: str, default: Any) -> Any:
        """A model or retrieval parameter, ``default`` when the file does not set it."""
        return self.parameters.get(name, default)


def content_version(use_case: str, body: dict[str, Any]) -> str:
    """The version of a prompt: a hash of what changes its behaviour, not of its label."""
    material = {"use_case": use_case, **{key: body[key] for key in _REQUIRED}}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]


def parse_prompt_file(path: Path, use_case: str) -> PromptVersion:
    """Read and check one prompt file."""
    try:
        body = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise PromptFileError(f"{path}: not valid TOML ({error})") from error
    for key in _REQUIRED:
        if key not in body:
            raise PromptFileError(f"{path}: field '{key}' is required")
    label = body.get("label", path.stem)
    if label not in LABELS or label != path.stem:
        raise PromptFileError(f"{path}: field 'label' must be the file name, one of {LABELS}")
    template = body["template"]
    if not isinstance(template, dict) or "system" not in template or "user" not in template:
        raise PromptFileError(f"{path}: field 'template' needs 'system' and 'user'")
    if "{question}" not in template["user"] + template["system"]:
        raise PromptFileError(f"{path}: field 'template' must contain {{question}}")
    return PromptVersion(
        use_case=use_case,
        label=label,
        version=content_version(use_case, body),
        model=str(body["model"]),
        parameters=dict(body["parameters"]),
        system=template["system"],
        user=template["user"],
        description=str(body.get("description", "")),
        source=path.as_posix(),
    )


class PromptRegistry(ConfigurableResource):
    """Prompt files in, versions and their label history out.

    Attributes:
        source_dir: Folder of prompt files (``<use_case>/<label>.toml``), in the repository.
        store_dir: Where every version seen, the label history and the release are kept.
    """

    source_dir: str = Field(description="Folder of prompt files, one sub-folder per use case.")
    store_dir: str = Field(description="Registry storage: versions, history, release.")

    def read_files(self) -> dict[str, dict[str, PromptVersion]]:
        """The prompts as the files say now: ``{use_case: {label: version}}``."""
        root = Path(self.source_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"prompt folder {root} does not exist")
        found: dict[str, dict[str, PromptVersion]] = {}
        for path in sorted(root.glob("*/*.toml")):
            prompt = parse_prompt_file(path, path.parent.name)
            found.setdefault(prompt.use_case, {})[prompt.label] = prompt
        for use_case, labels in found.items():
            if "production" not in labels:
                raise PromptFileError(f"{root / use_case}: production.toml is required")
        return found

    def _versions_dir(self) -> Path:
        return Path(self.store_dir, "versions")

    def record(
        self, prompts: dict[str, dict[str, PromptVersion]], now: datetime.datetime
    ) -> list[dict[str, Any]]:
        """Store new versions and append label moves to the history; return the new entries."""
        folder = self._versions_dir()
        folder.mkdir(parents=True, exist_ok=True)
        current = {(e["use_case"], e["label"]): e["version"] for e in self.history()}
        entries = []
        for use_case, labels in sorted(prompts.items()):
            for label, prompt in sorted(labels.items()):
                stored = folder / f"{prompt.version}.json"
                if not stored.exists():
                    stored.write_text(json.dumps(asdict(prompt), indent=1), encoding="utf-8")
                if current.get((use_case, label)) != prompt.version:
                    entries.append(
                        {
                            "at": now.isoformat(),
                            "use_case": use_case,
                            "label": label,
                            "version": prompt.version,
                            "model": prompt.model,
                            "previous": current.get((use_case, label)),
                        }
                    )
        if entries:
            with Path(self.store_dir, "history.jsonl").open("a", encoding="utf-8") as sink:
                sink.writelines(json.dumps(entry) + "\n" for entry in entries)
        return entries

    def history(self) -> list[dict[str, Any]]:
        """Every label move, oldest first."""
        path = Path(self.store_dir, "history.jsonl")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def current(self) -> dict[str, dict[str, PromptVersion]]:
        """The versions the registry last recorded per use case and label (not the files now)."""
        latest: dict[str, dict[str, str]] = {}
        for entry in self.history():
            latest.setdefault(entry["use_case"], {})[entry["label"]] = entry["version"]
        return {
            use_case: {label: self.load(version) for label, version in labels.items()}
            for use_case, labels in latest.items()
        }

    def load(self, version: str) -> PromptVersion:
        """A stored version by its hash."""
        path = self._versions_dir() / f"{version}.json"
        if not path.exists():
            raise KeyError(f"prompt version {version} is not in the registry ({path})")
        return PromptVersion(**json.loads(path.read_text(encoding="utf-8")))

    def record_evaluation(self, verdict: dict[str, Any]) -> None:
        """Keep an evaluation verdict (use case, versions compared, passed, figures)."""
        path = Path(self.store_dir, "evaluations.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as sink:
            sink.write(json.dumps(verdict) + "\n")

    def latest_evaluation(self, use_case: str) -> dict[str, Any] | None:
        """The most recent verdict for ``use_case``, or None if it was never evaluated."""
        path = Path(self.store_dir, "evaluations.jsonl")
        if not path.exists():
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
        verdicts = [v for v in map(json.loads, lines) if v["use_case"] == use_case]
        return verdicts[-1] if verdicts else None

    def write_release(self, release: dict[str, Any]) -> None:
        """Record what the gateway serves: per use case, the production and approved candidate."""
        path = Path(self.store_dir, "release.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".partial").write_text(json.dumps(release, indent=1), encoding="utf-8")
        path.with_suffix(".partial").replace(path)

    def release(self) -> dict[str, Any]:
        """The release record (empty before the first evaluation passed)."""
        path = Path(self.store_dir, "release.json")
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def served(self, use_case: str) -> tuple[PromptVersion, PromptVersion | None, float]:
        """What the gateway serves for ``use_case``: production, approved candidate, its share.

        Before any release exists (a fresh start), production comes straight from the files and
        no candidate gets traffic: an unevaluated candidate never reaches a user.
        """
        entry = self.release().get(use_case)
        if entry is None:
            files = self.read_files()
            if use_case not in files:
                raise KeyError(f"no prompt files for use case {use_case!r} in {self.source_dir}")
            return files[use_case]["production"], None, 0.0
        candidate = self.load(entry["candidate"]) if entry.get("candidate") else None
        return self.load(entry["production"]), candidate, float(entry.get("candidate_share", 0))
