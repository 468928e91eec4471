"""Where stems go (``daemon.engine.outputs``): pure template fields with today and the tags
passed in, collisions against a given set of existing paths, the sidecar; and, through the
real engine and emulator, untagged songs with ``{artist}/{title}/{stem}.{ext}``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from test_engine_rig import rig

from daemon.engine.outputs import (
    NO_HASH,
    UNKNOWN_ARTIST,
    Tags,
    is_skipped,
    plan_paths,
    sidecar_data,
    sidecar_path,
    template_fields,
)
from daemon.filing import TEMPLATE_FIELDS, render_output_path
from daemon.jobs import Job, JobRequest, JobState, ResultFile, SourceFile

TODAY = date(2026, 3, 4)
REQUEST = JobRequest(sep_type=40, options={}, output_format=2, algorithm_name="BS Roformer")
TEMPLATE = "{artist}/{title}/{stem}.{ext}"


def source(name: str = "My Song.wav", **changes: Any) -> SourceFile:
    fields: dict[str, Any] = {
        "path": Path("/in") / name,
        "inbox": "music",
        "relative_path": name,
        "preset": "vocals",
        "request": REQUEST,
        "output_dir": Path("/out"),
        "output_template": TEMPLATE,
        "failed_dir": Path("/in/_failed"),
        **changes,
    }
    return SourceFile(**fields)


VOCALS = ResultFile(type="Vocals", url="http://x/1", download="song_vocals.flac")


NO_TAGS = Tags()


def fields_for(
    src: SourceFile, tags: Tags = NO_TAGS, result: ResultFile = VOCALS
) -> dict[str, str]:
    return template_fields(src, result, mvsep_hash=None, today=TODAY, tags=tags)


@pytest.mark.parametrize(
    ("tags", "artist", "title"),
    [
        (Tags(), UNKNOWN_ARTIST, "My Song"),
        (Tags(artist="  ", title=""), UNKNOWN_ARTIST, "My Song"),
        (Tags(artist="Nina", title=None), "Nina", "My Song"),
        (Tags(artist=None, title="Real Title"), UNKNOWN_ARTIST, "Real Title"),
        (Tags(artist="Nina", title="Real Title"), "Nina", "Real Title"),
    ],
)
def test_missing_tags_fall_back(tags: Tags, artist: str, title: str) -> None:
    values = fields_for(source(), tags)
    assert (values["artist"], values["title"]) == (artist, title)


def test_no_field_renders_empty_but_relative_dir() -> None:
    bare = ResultFile(type="", url="http://x/1")
    values = fields_for(source(request=JobRequest(40, {}, 2, "")), Tags(), bare)
    assert set(values) == TEMPLATE_FIELDS
    assert [k for k, v in values.items() if not v.strip()] == ["relative_dir"]
    assert values["hash"] == NO_HASH and values["date"] == "2026-03-04"
    assert values["ext"] == "flac" and values["stem"] == "stem"


def test_every_field_keeps_its_folder_level() -> None:
    """A template of every field but relative_dir, one per folder: no level collapses."""
    names = sorted(TEMPLATE_FIELDS - {"relative_dir"})
    template = "/".join("{" + n + "}" for n in names)
    rendered = render_output_path(template, fields_for(source(), Tags()))
    assert len(rendered.parts) == len(names)


def test_two_untagged_songs_land_in_different_folders() -> None:
    a, b = source("one.wav"), source("two.wav")
    paths = [plan_paths(s, [fields_for(s)], exists=lambda p: False)[0] for s in (a, b)]
    assert paths == [
        Path("/out/Unknown Artist/one/Vocals.flac"),
        Path("/out/Unknown Artist/two/Vocals.flac"),
    ]


def test_collisions_against_existing_paths_and_within_a_job() -> None:
    src = source(output_template="{name}.{ext}")
    taken = {Path("/out/My Song.flac"), Path("/out/My Song (2).flac")}
    two = [fields_for(src), fields_for(src)]
    assert plan_paths(src, two, exists=taken.__contains__) == [
        Path("/out/My Song (3).flac"),
        Path("/out/My Song (4).flac"),
    ]
    skip = plan_paths(source(output_template="{name}.{ext}", on_collision="skip"), two[:1],
                      exists=taken.__contains__)  # fmt: skip
    assert is_skipped(str(skip[0]))
    over = plan_paths(source(output_template="{name}.{ext}", on_collision="overwrite"), two,
                      exists=taken.__contains__)  # fmt: skip
    assert over == [Path("/out/My Song.flac"), Path("/out/My Song (2).flac")]


def test_sidecar_path_and_data() -> None:
    src = source("one.wav")
    job = Job(id=7, source=src, size=1, mtime=1.0, created_at=1.0, updated_at=1.0,
              state=JobState.FILED, mvsep_hash="h", intent_at=0.0)  # fmt: skip
    first = Path("/out/Unknown Artist/one/Vocals.flac")
    assert sidecar_path(src, first) == Path("/out/Unknown Artist/one/one.mvsep.json")
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    data = sidecar_data(job, [first], filed_at=when)
    assert data["filed_at"] == "2026-03-04T05:06:07+00:00"
    assert data["submitted_at"] == "1970-01-01T00:00:00+00:00"
    assert data["mvsep_hash"] == "h" and data["outputs"] == [str(first)]


def test_untagged_songs_with_artist_title_template_keep_their_own_folders(
    tmp_path: Path, make_emulator: Callable[..., Any], audio_file: Callable[..., Path]
) -> None:
    """Defect 5: untagged files and ``{artist}/{title}/{stem}.{ext}`` mixed the stems of
    different songs in the output root (``out/Vocals.wav``, ``out/Vocals (2).wav``)."""
    emu = make_emulator(processing_s=0.1)
    with rig(tmp_path, emu) as r:
        songs = [audio_file("in/first song.wav", seconds=1.0),
                 audio_file("in/second song.wav", seconds=1.1)]  # other audio  # fmt: skip
        ids = [r.submit(s, output_template=TEMPLATE) for s in songs]
        assert r.engine.run_until_idle(30)
        for job_id, song in zip(ids, songs, strict=True):
            job = r.job(job_id)
            assert job.state is JobState.FILED, job.last_error
            folder = r.out / UNKNOWN_ARTIST / song.stem
            assert job.outputs and all(Path(p).parent == folder for p in job.outputs)
        assert not [p for p in r.out.iterdir() if p.is_file()]  # nothing in the output root
        assert not list(r.out.rglob("* (2).*"))  # no collisions between the two songs
