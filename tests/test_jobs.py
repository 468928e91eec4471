"""The pure job state machine: transition tables and random event sequences."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.errors import IllegalTransition
from daemon.jobs import (
    ALLOWED,
    TERMINAL_STATES,
    CancelDeclined,
    Cancelled,
    CancelRequested,
    Deferred,
    Duplicate,
    Event,
    Expired,
    Failed,
    Filed,
    Job,
    JobRequest,
    JobState,
    OutputsPlanned,
    PollFailed,
    Prepared,
    ReconciledAbsent,
    ResultFile,
    ResultReady,
    Resumed,
    SourceFile,
    StatusSeen,
    SubmitIntent,
    Submitted,
    cancel_event,
    transition,
)

S = JobState
REQUEST = JobRequest(sep_type=40, options={"add_opt1": "3"}, output_format=2, algorithm_name="BS")
SOURCE = SourceFile(
    path=Path("/in/a.wav"),
    inbox="main",
    relative_path="a.wav",
    preset="vocals",
    request=REQUEST,
    output_dir=Path("/out"),
    output_template="{name}/{stem}.{ext}",
    failed_dir=Path("/in/_failed"),
)
URL_FILES = (ResultFile(type="Vocals", url="http://x/v.flac", download="v.flac"),)
LOCAL_FILES = (ResultFile(type="Vocals", local="/out/a/Vocals.flac"),)


def new_job(**changes: object) -> Job:
    base = Job(id=1, source=SOURCE, size=10, mtime=1.0, created_at=0.0, updated_at=0.0)
    import dataclasses

    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def sample_events() -> list[Event]:
    return [
        Prepared("abc", 2.0),
        SubmitIntent("n1", "http://de.example"),
        Submitted("h1"),
        ReconciledAbsent(),
        StatusSeen("waiting"),
        PollFailed("503", due_at=60.0),
        ResultReady(URL_FILES),
        Duplicate(7, LOCAL_FILES, "abc"),
        OutputsPlanned(("/out/a/Vocals.flac",)),
        Filed(("/out/a/Vocals.flac",)),
        Deferred(due_at=50.0, error="boom"),
        Resumed(),
        Expired("gone"),
        CancelRequested("user"),
        CancelDeclined("processing"),
        Cancelled("user"),
        Failed("bad"),
    ]


def prepared_for(state: JobState) -> Job:
    """A job in ``state`` that satisfies every precondition a legal event could need."""
    base = new_job(state=state, sha256="abc")
    if state in (S.QUEUED, S.DOWNLOADING):
        base = new_job(state=state, sha256="abc", mvsep_hash="h0")
    if state is S.DOWNLOADING:
        base = new_job(state=state, sha256="abc", planned_outputs=("/o",))
    if state is S.RETRY_WAIT:
        base = new_job(state=state, sha256="abc", resume_state=S.READY)
    return base


CASES = [(state, ev) for state in JobState for ev in sample_events()]


@pytest.mark.parametrize(("state", "event"), CASES, ids=lambda x: getattr(x, "kind", str(x)))
def test_transition_table(state: JobState, event: Event) -> None:
    job = prepared_for(state)
    if state in ALLOWED[event.kind]:
        try:
            new = transition(job, event, now=5.0)
        except IllegalTransition as exc:  # a precondition, not the table, refused it
            assert "refused" in str(exc)
            return
        assert new.updated_at == 5.0
    else:
        with pytest.raises(IllegalTransition, match=event.kind):
            transition(job, event, now=5.0)


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (S.READY, SubmitIntent("n"), S.SUBMITTING),
        (S.SUBMITTING, Submitted("h"), S.QUEUED),
        (S.SUBMITTING, ReconciledAbsent(), S.READY),
        (S.QUEUED, StatusSeen("processing"), S.QUEUED),
        (S.QUEUED, ResultReady(URL_FILES), S.DOWNLOADING),
        (S.READY, Duplicate(3, LOCAL_FILES, "abc"), S.DOWNLOADING),
        (S.DOWNLOADING, Filed(("/o",)), S.FILED),
        (S.QUEUED, Expired("gone"), S.READY),
        (S.READY, Cancelled("x"), S.CANCELLED),
        (S.QUEUED, Failed("x"), S.FAILED),
        (S.DOWNLOADING, Deferred(due_at=9, error="disk full"), S.RETRY_WAIT),
    ],
)
def test_main_transitions(state: JobState, event: Event, expected: JobState) -> None:
    job = prepared_for(state)
    if isinstance(event, Submitted | Duplicate):
        job = new_job(state=state, sha256="abc")
    assert transition(job, event, now=1.0).state is expected


def test_submit_records_intent_time_and_nonce() -> None:
    job = transition(new_job(sha256="abc"), SubmitIntent("nonce1"), now=42.0)
    assert (job.state, job.nonce, job.intent_at) == (S.SUBMITTING, "nonce1", 42.0)


def test_unprepared_job_cannot_be_submitted() -> None:
    with pytest.raises(IllegalTransition, match="not prepared"):
        transition(new_job(), SubmitIntent("n"), now=1.0)


def test_done_without_urls_is_not_a_result() -> None:
    job = new_job(state=S.QUEUED, mvsep_hash="h")
    with pytest.raises(IllegalTransition, match="still pending"):
        transition(job, ResultReady(()), now=1.0)
    with pytest.raises(IllegalTransition, match="no url"):
        transition(job, ResultReady((ResultFile(type="Vocals"),)), now=1.0)


def test_deferred_resumes_where_it_was_and_counts_attempts() -> None:
    job = new_job(state=S.DOWNLOADING, mvsep_hash="h")
    job = transition(job, Deferred(due_at=10.0, error="ENOSPC"), now=3.0)
    assert (job.state, job.resume_state, job.attempts, job.first_error_at) == (
        S.RETRY_WAIT,
        S.DOWNLOADING,
        1,
        3.0,
    )
    job = transition(job, Resumed(), now=10.0)
    job = transition(job, Deferred(due_at=20.0, error="ENOSPC"), now=11.0)
    assert (job.attempts, job.first_error_at) == (2, 3.0)


def test_deferred_submit_known_not_created_goes_back_to_ready() -> None:
    job = transition(new_job(sha256="abc"), SubmitIntent("n"), now=1.0)
    job = transition(job, Deferred(due_at=5.0, error="503", resume=S.READY), now=2.0)
    assert (job.resume_state, job.nonce) == (S.READY, None)
    assert not job.holds_slot
    job = transition(job, Resumed(), now=5.0)
    assert job.state is S.READY


def test_progress_clears_retry_streak() -> None:
    job = transition(new_job(sha256="abc"), Deferred(due_at=5.0, error="x"), now=1.0)
    job = transition(job, Resumed(), now=5.0)
    job = transition(job, SubmitIntent("n"), now=5.0)
    job = transition(job, Submitted("h"), now=6.0)
    assert (job.attempts, job.first_error_at, job.last_error) == (0, None, None)


def test_outcome_unknown_retry_wait_cannot_be_cancelled_directly() -> None:
    job = new_job(state=S.RETRY_WAIT, resume_state=S.SUBMITTING, nonce="n")
    assert job.holds_slot
    with pytest.raises(IllegalTransition, match="reconcile"):
        transition(job, Cancelled("x"), now=1.0)
    assert isinstance(cancel_event(job, "x", processing="discard"), CancelRequested)


@pytest.mark.parametrize(
    ("state", "resume", "processing", "expected"),
    [
        (S.READY, None, "discard", Cancelled),
        (S.RETRY_WAIT, S.READY, "keep", Cancelled),
        (S.RETRY_WAIT, S.SUBMITTING, "discard", CancelRequested),
        (S.RETRY_WAIT, S.DOWNLOADING, "keep", type(None)),
        (S.SUBMITTING, None, "discard", CancelRequested),
        (S.QUEUED, None, "keep", CancelRequested),
        (S.DOWNLOADING, None, "discard", Cancelled),
        (S.DOWNLOADING, None, "keep", type(None)),
        (S.FILED, None, "discard", type(None)),
    ],
)
def test_cancel_event(
    state: JobState, resume: JobState | None, processing: str, expected: type
) -> None:
    job = new_job(state=state, resume_state=resume)
    assert isinstance(cancel_event(job, "r", processing=processing), expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_are_final(terminal: JobState) -> None:
    job = new_job(state=terminal)
    for ev in sample_events():
        with pytest.raises(IllegalTransition):
            transition(job, ev, now=1.0)


def test_source_file_json_round_trip() -> None:
    assert SourceFile.from_json(SOURCE.to_json()) == SOURCE


# ---------------------------------------------------------------- random sequences

ANY_EVENT = st.sampled_from(sample_events()) | st.builds(
    Deferred,
    due_at=st.floats(0, 100),
    error=st.just("x"),
    resume=st.sampled_from([None, S.READY, S.SUBMITTING, S.DOWNLOADING]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(ANY_EVENT, max_size=60))
def test_random_event_sequences_keep_invariants(events: list[Event]) -> None:
    job = new_job()
    log: list[tuple[str, JobState, JobState]] = []
    for i, ev in enumerate(events):
        before = job
        try:
            job = transition(job, ev, now=float(i))
        except IllegalTransition:
            assert job == before  # a refused event changes nothing
            continue
        log.append((ev.kind, before.state, job.state))
        # terminal states are final: nothing was applied after one
        assert not before.state.is_terminal
        assert job.state is not S.RETRY_WAIT or job.resume_state is not None
        if job.state in (S.QUEUED,):
            assert job.mvsep_hash is not None
        if job.state is S.SUBMITTING:
            assert job.nonce is not None and job.mvsep_hash is None
            assert job.base_url == "http://de.example"  # the host goes with the intent
        if job.state is S.READY:
            assert job.base_url is None  # no host before the next intent
    kinds = [k for k, _, _ in log]
    # never submitted twice: each new hash needs an expiry (result gone) in between
    assert kinds.count("submitted") <= 1 + kinds.count("expired")
    # never filed twice
    assert kinds.count("filed") <= 1
    # every state change is in the log, and the log replays to the final state
    state = S.READY
    for _, before_state, after_state in log:
        assert before_state is state
        state = after_state
    assert state is job.state


@pytest.mark.parametrize(
    ("path", "relative", "root"),
    [
        ("/in/a.wav", "a.wav", "/in"),
        ("/srv/share/in/karaoke/2024/a b.wav", "karaoke/2024/a b.wav", "/srv/share/in"),
    ],
)
def test_inbox_root_is_the_path_less_its_relative_part(path: str, relative: str, root: str) -> None:
    source = dataclasses.replace(SOURCE, path=Path(path), relative_path=relative)
    assert source.inbox_root == Path(root)


# ---------------------------------------------------------------- regions, poll streaks


def test_the_submit_intent_records_the_host_until_it_is_spent() -> None:
    submitting = transition(new_job(sha256="abc"), SubmitIntent("n", "http://de.x"), now=1.0)
    assert submitting.base_url == "http://de.x"
    queued = transition(submitting, Submitted("h"), now=2.0)
    assert queued.base_url == "http://de.x"  # the job lives there from now on
    polled = transition(queued, StatusSeen("processing"), now=3.0)
    assert transition(polled, ResultReady(URL_FILES), now=4.0).base_url == "http://de.x"
    # known not created, or nothing found in the history: the host goes with the nonce
    assert transition(submitting, ReconciledAbsent(), now=5.0).base_url is None
    deferred = transition(submitting, Deferred(due_at=9, error="x", resume=S.READY), now=5.0)
    assert deferred.base_url is None
    reconciling = transition(submitting, Deferred(due_at=9, error="x"), now=5.0)
    assert reconciling.base_url == "http://de.x"  # reconciled on the host it went to
    assert transition(queued, Expired("gone"), now=6.0).base_url is None


def test_failed_polls_are_a_journaled_streak_that_an_answer_ends() -> None:
    queued = new_job(state=S.QUEUED, sha256="abc", mvsep_hash="h", mvsep_status="waiting")
    first = transition(queued, PollFailed("503", due_at=20.0), now=10.0)
    second = transition(first, PollFailed("502", due_at=40.0), now=30.0)
    assert first.state is second.state is S.QUEUED  # a poll retries in place
    assert (second.attempts, second.first_error_at, second.next_attempt_at) == (2, 10.0, 40.0)
    assert second.last_error == "502"
    answered = transition(second, StatusSeen("waiting"), now=41.0)
    assert (answered.attempts, answered.first_error_at, answered.next_attempt_at) == (
        0,
        None,
        None,
    )
    assert answered.last_error is None and answered.mvsep_status == "waiting"
    for state in set(JobState) - {S.QUEUED}:
        with pytest.raises(IllegalTransition, match="poll_failed"):
            transition(prepared_for(state), PollFailed("x", due_at=1.0), now=1.0)
