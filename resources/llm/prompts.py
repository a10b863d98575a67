"""The prompt registry: prompts are TOML files in the repository, versioned by content hash.

A use case is a folder under the prompt root (``serving/prompts/<use_case>/``) holding one file
per label: ``production.toml`` (required) and ``candidate.toml`` (optional). A file gives the
model, its parameters and the template. Its version is the hash of that content (label, comments
and description excluded), so promoting a candidate by copying it over ``production.toml`` keeps
its version. Every version ever seen is stored once in the registry's store, with a history of
which label pointed at it when, so the gateway can serve an approved version after the file has
moved on; the store also keeps the evaluation verdicts and the releases. The store is tables
behind a SQLAlchemy URL: a SQLite file under the data folder locally, PostgreSQL in production,
shared by the code location and every gateway replica.
"""

import datetime
import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dagster import ConfigurableResource
from pydantic import Field

from resources.llm import sql

LABELS = ("production", "candidate")
_REQUIRED = ("model", "parameters", "template")
_STORE_URL = "PromptRegistry.store_url"

_METADATA = sa.MetaData()
# Each version once, by its hash: the PromptVersion as JSON.
_VERSIONS = sa.Table(
    "prompt_versions",
    _METADATA,
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("use_case", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
# Append-only, oldest first: which label pointed at which version from when.
_HISTORY = sa.Table(
    "prompt_history",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sql.ISO_TEXT, nullable=False),
    sa.Column("use_case", sa.Text, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("previous", sa.Text, nullable=True),
)
_HISTORY_FIELDS = ("at", "use_case", "label", "version", "model", "previous")
# Append-only: every evaluation verdict (JSON), and every release (JSON); the latest one counts.
_EVALUATIONS = sa.Table(
    "prompt_evaluations",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("use_case", sa.Text, nullable=False, index=True),
    sa.Column("verdict", sa.Text, nullable=False),
)
_RELEASES = sa.Table(
    "prompt_releases",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("release", sa.Text, nullable=False),
)
_READY: set[str] = set()  # store URLs whose tables this process has created or seen


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
        store_url: Where every version seen, the label history, the evaluation verdicts and the
            releases are kept: ``sqlite:///<file>`` locally, ``postgresql://…`` in production.
    """

    source_dir: str = Field(description="Folder of prompt files, one sub-folder per use case.")
    store_url: str = Field(
        description="Registry store (versions, history, evaluations, releases): "
        "sqlite:///<file> locally, postgresql://… in prod."
    )

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

    def store_location(self) -> str:
        """The store's URL for messages: its password hidden."""
        return sql.redacted(self.store_url)

    def _engine(self) -> sa.Engine:
        """The store's engine (one per process), its tables created on first use."""
        engine = sql.shared_engine(self.store_url, _STORE_URL)
        if self.store_url not in _READY:
            sql.create_tables(engine, _METADATA)
            _READY.add(self.store_url)
        return engine

    def record(
        self, prompts: dict[str, dict[str, PromptVersion]], now: datetime.datetime
    ) -> list[dict[str, Any]]:
        """Store new versions and append label moves to the history; return the new entries.

        One transaction, serialized with other recorders: two at once cannot both append a move.
        """
        entries = []
        with sql.serialized(self._engine(), "prompt_history") as connection:
            current = {(e["use_case"], e["label"]): e["version"] for e in self._history(connection)}
            for use_case, labels in sorted(prompts.items()):
                for label, prompt in sorted(labels.items()):
                    body = {"use_case": use_case, "body": json.dumps(asdict(prompt))}
                    sql.insert_new(
                        connection, _VERSIONS, "version", {"version": prompt.version, **body}
                    )
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
                connection.execute(_HISTORY.insert(), entries)
        return entries

    def history(self) -> list[dict[str, Any]]:
        """Every label move, oldest first."""
        with self._engine().connect() as connection:
            return self._history(connection)

    @staticmethod
    def _history(connection: sa.Connection) -> list[dict[str, Any]]:
        columns = [_HISTORY.c[name] for name in _HISTORY_FIELDS]
        rows = connection.execute(sa.select(*columns).order_by(_HISTORY.c.id))
        return [dict(zip(_HISTORY_FIELDS, row, strict=True)) for row in rows]

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
        query = sa.select(_VERSIONS.c.body).where(_VERSIONS.c.version == version)
        with self._engine().connect() as connection:
            body = connection.execute(query).scalar()
        if body is None:
            raise KeyError(
                f"prompt version {version} is not in the registry ({self.store_location()})"
            )
        return PromptVersion(**json.loads(body))

    def record_evaluation(self, verdict: dict[str, Any]) -> None:
        """Keep an evaluation verdict (use case, versions compared, passed, figures)."""
        row = {"use_case": verdict["use_case"], "verdict": json.dumps(verdict)}
        with self._engine().begin() as connection:
            connection.execute(_EVALUATIONS.insert(), row)

    def latest_evaluation(self, use_case: str) -> dict[str, Any] | None:
        """The most recent verdict for ``use_case``, or None if it was never evaluated."""
        query = (
            sa.select(_EVALUATIONS.c.verdict)
            .where(_EVALUATIONS.c.use_case == use_case)
            .order_by(_EVALUATIONS.c.id.desc())
            .limit(1)
        )
        with self._engine().connect() as connection:
            verdict = connection.execute(query).scalar()
        return None if verdict is None else json.loads(verdict)

    def write_release(self, release: dict[str, Any]) -> None:
        """Record what the gateway serves: per use case, the production and approved candidate."""
        with self._engine().begin() as connection:
            connection.execute(_RELEASES.insert(), {"release": json.dumps(release)})

    def release(self) -> dict[str, Any]:
        """The latest release record (empty before the first evaluation passed)."""
        query = sa.select(_RELEASES.c.release).order_by(_RELEASES.c.id.desc()).limit(1)
        with self._engine().connect() as connection:
            release = connection.execute(query).scalar()
        return {} if release is None else json.loads(release)

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
