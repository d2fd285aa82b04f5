"""Plan-time checks of what a manifest asks of its profile's engines, before anything is written.

A profile's own params are checked when it loads (profiles.py); here the manifest's params are
merged over them exactly as the planner merges them, checked against what the chosen engine
reads (engines/params.py), and every problem is pointed at the line that set the value: the
chapter's or track's own `params`, the book's or album's, the manifest's `language`, or the
profile. A name that only another engine of the same kind reads is accepted (one manifest is
often rendered with several profiles: the offline one for proof-listening, then the real one);
a name no engine reads is refused with the closest known one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError, create_model

from songbatch.engines import params_models
from songbatch.engines.base import Kind
from songbatch.engines.params import EngineParams, params_problem
from songbatch.errors import ManifestError, ProfileError
from songbatch.ledger import JobRow, PlanRow
from songbatch.manifest import Album, Audiobook, LoadedManifest, MusicLayer, Track
from songbatch.profiles import Profile, engine_language_problem, profile_params_model
from songbatch.yamlstrict import FieldPath, StrictDocument, load_yaml, plain_message


@dataclass(frozen=True)
class _Source:
    """One mapping that contributes params: where it was written and what it holds."""

    in_profile: bool
    path: FieldPath  # of the mapping (e.g. chapters[2].voice.params), or of `language`
    values: Mapping[str, Any]
    key_is_path: bool = False  # `path` is the value itself (the manifest's `language:`)


def check_manifest_inputs(loaded: LoadedManifest, profile: Profile) -> None:
    """Raise ManifestError (or ProfileError) naming file, line and field for the first param
    or language the profile's engine cannot take."""
    _Checker(loaded, profile).run()


class _Checker:
    def __init__(self, loaded: LoadedManifest, profile: Profile) -> None:
        self.loaded = loaded
        self.profile = profile
        self.doc = loaded.doc
        self._seen: set[tuple[int, frozenset[tuple[str, Any]], frozenset[tuple[str, int]]]] = set()
        self._profile_doc: StrictDocument | None = None

    def run(self) -> None:
        if self.doc is None:  # built in code, not loaded from a file: nothing to point at
            return
        manifest = self.loaded.manifest
        if isinstance(manifest, Audiobook):
            self.check_book(manifest)
        else:
            self.check_album(manifest)

    # -- per kind

    def check_book(self, book: Audiobook) -> None:
        config = self.profile.speech
        model = profile_params_model(self.profile, "speech")
        book_params = _params_at(self._data(), ("voice", "params"))
        for i, chapter in enumerate(book.chapters):
            # A chapter's own params where it was written (credits have none of their own).
            own = (*(chapter.where or ("chapters", i)), "voice", "params")
            sources = [
                _Source(False, ("language",), {"language": book.language}, key_is_path=True),
                _Source(True, ("speech", "params"), config.params),
                _Source(False, ("voice", "params"), book_params),
                _Source(False, own, _params_at(self._data(), own)),
            ]
            # The planner's merge (planner._speech_job): the same dict the job will carry.
            params = {"language": book.language, **config.params, **chapter.voice.params}
            self.check_params("speech", config.engine, model, params, sources)

    def check_album(self, album: Album) -> None:
        config = self.profile.music
        model = profile_params_model(self.profile, "music")
        album_params = _params_at(self._data(), ("params",))
        for i, track in enumerate(album.tracks):
            sources = [
                _Source(True, ("music", "params"), config.params),
                _Source(False, ("params",), album_params),
                _Source(
                    False,
                    ("tracks", i, "params"),
                    _params_at(self._data(), ("tracks", i, "params")),
                ),
            ]
            if track.layers:
                self.check_layers(track, i, sources)
                continue
            params = {**config.params, **track.params}  # planner._music_job
            self.check_params("music", config.engine, model, params, sources)

    def check_layers(self, track: Track, i: int, music_sources: list[_Source]) -> None:
        """Each music layer's params as the music engine reads them (the album's and the
        track's under its own), each spoken layer's as the speech engine does."""
        if self.profile.remote:
            assert self.doc is not None
            raise self.doc.error(
                ("tracks", i, "layers"),
                "layered tracks are mixed from jobs of two engines, which only the local"
                f" executor runs in one manifest; the remote profile {self.profile.name!r}"
                " does not yet: render this album with a local profile (`--profile local`,"
                " or `offline` to proof-listen)",
            )
        music, speech = self.profile.music, self.profile.speech
        for j, layer in enumerate(track.layers):
            own: FieldPath = ("tracks", i, "layers", j)
            if isinstance(layer, MusicLayer):
                sources = [
                    *music_sources,
                    _Source(False, (*own, "params"), _params_at(self._data(), (*own, "params"))),
                ]
                params = {**music.params, **layer.params}  # planner._layer_music_job
                model = profile_params_model(self.profile, "music")
                self.check_params("music", music.engine, model, params, sources)
                continue
            voice = (*own, "voice", "params")
            sources = [
                _Source(False, (*own, "language"), {"language": layer.language}, key_is_path=True),
                _Source(True, ("speech", "params"), speech.params),
                _Source(False, voice, _params_at(self._data(), voice)),
            ]
            # planner._plan_layers: the same dict the layer's jobs will carry
            params = {"language": layer.language, **speech.params, **layer.voice.params}
            model = profile_params_model(self.profile, "speech")
            self.check_params("speech", speech.engine, model, params, sources)

    # -- params

    def check_params(
        self,
        kind: Kind,
        engine: str,
        model: type[EngineParams] | None,
        params: dict[str, Any],
        sources: list[_Source],
    ) -> None:
        if model is None:
            return  # an engine songbatch does not know; check_engine refuses it before a run
        # Where each value came from matters too (errors point there; load-only names).
        origins = frozenset((key, i) for i, src in enumerate(sources) for key in src.values)
        seen = (id(model), frozenset(params.items()), origins)
        if seen in self._seen:  # chapters share their params: check each combination once
            return
        self.check_load_only(kind, model, sources)
        others = _other_engines(kind, engine)
        foreign = {k: v for k, v in params.items() if k not in model.model_fields}
        for key, value in foreign.items():
            self.check_foreign(key, value, model, others, sources)
        own = {k: v for k, v in params.items() if k in model.model_fields}
        problem = params_problem(model, own)
        if problem is not None:
            fields = problem.fields or ((problem.key,) if problem.key else ())
            raise self.error(fields, problem.message, sources)
        if kind == "speech":
            language = engine_language_problem(engine, params)
            if language is not None:
                name, message = language
                raise self.error((name,), f"{message} (profile {self.profile.name!r})", sources)
        self._seen.add(seen)

    def check_load_only(
        self, kind: Kind, model: type[EngineParams], sources: list[_Source]
    ) -> None:
        """Params the engine reads once, from the profile, cannot vary per book or track."""
        for source in sources:
            if source.in_profile or source.key_is_path:
                continue
            for key in sorted(model.load_only & set(source.values)):
                raise self.error(
                    (key,),
                    f"{key!r} is read once, when the engine loads: set it in the profile's"
                    f" {kind}.params ({self.profile.path})",
                    [source],
                    at_key=True,
                )

    def check_foreign(
        self,
        key: str,
        value: Any,
        model: type[EngineParams],
        others: dict[str, type[EngineParams]],
        sources: list[_Source],
    ) -> None:
        """A name the chosen engine does not read: fine if another engine reads it (and the
        value would do there), else unknown."""
        readers = {name: m for name, m in others.items() if key in m.model_fields}
        if not readers:
            known = {field for m in others.values() for field in m.model_fields}
            problem = params_problem(model, {key: value}, also_known=sorted(known))
            message = problem.message if problem else f"unknown engine parameter {key!r}"
            raise self.error((key,), message, sources, at_key=True)
        complaints = []
        for name, other in readers.items():
            complaint = _field_problem(other, key, value)
            if complaint is None:
                return
            complaints.append(f"{complaint} (as {name} reads it)")
        raise self.error((key,), complaints[0], sources)

    # -- errors

    def error(
        self,
        fields: Iterable[str],
        message: str,
        sources: list[_Source],
        *,
        at_key: bool = False,
    ) -> ManifestError:
        """The error at the most specific place that set one of `fields`."""
        names = list(fields)
        source = next(
            (s for s in reversed(sources) if any(n in s.values for n in names)), sources[-1]
        )
        name = next((n for n in names if n in source.values), names[0] if names else None)
        path = source.path if source.key_is_path or name is None else (*source.path, name)
        if source.in_profile:
            doc = self._profile_document()
            return doc.error(path, message, at_key=at_key, error_cls=ProfileError)
        assert self.doc is not None
        return self.doc.error(path, message, at_key=at_key)

    def _profile_document(self) -> StrictDocument:
        if self._profile_doc is None:
            self._profile_doc = load_yaml(self.profile.path, error_cls=ProfileError)
        return self._profile_doc

    def _data(self) -> dict[str, Any]:
        assert self.doc is not None
        return self.doc.data


def _params_at(data: dict[str, Any], path: FieldPath) -> dict[str, Any]:
    """The params mapping written at `path` ({} where it is absent or null)."""
    node: Any = data
    for part in path:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return {}
    return node if isinstance(node, dict) else {}


def _other_engines(kind: Kind, engine: str) -> dict[str, type[EngineParams]]:
    return {name: m for name, m in params_models(kind).items() if name != engine}


def _field_problem(model: type[EngineParams], key: str, value: Any) -> str | None:
    """Why `value` is not a valid `key` for `model`, judged on that field alone; or None."""
    try:
        _one_field(model, key).model_validate({key: value})
    except ValidationError as exc:
        return plain_message(exc.errors(include_url=False)[0])
    return None


@functools.lru_cache(maxsize=256)
def _one_field(model: type[EngineParams], key: str) -> type[EngineParams]:
    info = model.model_fields[key]
    definition: Any = (info.annotation, info)
    return create_model(f"{model.__name__}_{key}", __base__=EngineParams, **{key: definition})


def check_remote_inputs(
    loaded: LoadedManifest, profile: Profile, jobs: list[JobRow], rows: list[PlanRow]
) -> None:
    """Build every job's model input now, as the remote executor will: a chunk longer than a
    model's `limits` (or a prompt shorter) is refused at its chapter or track, not failed
    after the plan is written."""
    from songbatch.remote.mapping import InputError, model_input

    replicate = profile.replicate
    doc = loaded.doc
    if replicate is None or doc is None:
        return
    by_key = {job.key: job for job in jobs}
    units = "chapters" if isinstance(loaded.manifest, Audiobook) else "tracks"
    for row in rows:
        job = by_key[row.key]
        model = replicate.models[job.model]
        voice = "https://voice.invalid/" if job.request.voice else None
        try:
            model_input(model, job.request, voice)
        except (InputError, ValueError, TypeError) as exc:
            hint = ""
            if units == "chapters":
                hint = f"; lower speech.max_chars ({profile.speech.max_chars}) in {profile.path}"
            where: FieldPath = (units, row.unit)
            if isinstance(loaded.manifest, Audiobook):
                where = loaded.manifest.chapters[row.unit].where or where  # credits too
            raise doc.error(where, f"{exc}{hint}") from None


__all__ = ["check_manifest_inputs", "check_remote_inputs"]
