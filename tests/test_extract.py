"""tasks.extract: matches, flags, limits, compile errors and the per-pattern time budget."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import regex

import tasks.extract
from tasks.errors import BadPattern, InvalidPayload, PermanentError
from tasks.extract import Match, PatternError, PatternResult, run_patterns

CATASTROPHIC = r"(a+)+$"
EVIL_TEXT = "a" * 5000 + "!"
# Wall-clock slack on top of a pattern's budget: the engine checks its clock often, but a busy CI
# machine can be slow to schedule us.
SLACK_S = 2.0


def _run(text: str, *patterns: str, flags: Sequence[str] = (), max_matches: int = 100) -> list[PatternResult]:
    return run_patterns(text, patterns, flags=flags, timeout_s=2.0, max_matches=max_matches)


def test_matches_spans_and_groups() -> None:
    """Each match carries its text, span, positional groups (None when unused) and named groups."""
    [result] = _run("id=7 id=42x", r"id=(?P<num>\d+)(x)?")
    assert result == PatternResult(
        pattern=r"id=(?P<num>\d+)(x)?",
        matches=[
            Match(match="id=7", start=0, end=4, groups=["7", None], named={"num": "7"}),
            Match(match="id=42x", start=5, end=11, groups=["42", "x"], named={"num": "42"}),
        ],
        count=2,
        truncated=False,
        error=None,
    )


def test_results_follow_pattern_order() -> None:
    """One result per pattern, in the order given; a pattern with no match has count 0."""
    results = _run("cat dog", "dog", "bird", "cat")
    assert [(r.pattern, r.count, [m.match for m in r.matches]) for r in results] == [
        ("dog", 1, ["dog"]),
        ("bird", 0, []),
        ("cat", 1, ["cat"]),
    ]


def test_no_patterns_no_results() -> None:
    """An empty pattern list gives an empty result list."""
    assert _run("text") == []


def test_zero_width_matches_like_finditer() -> None:
    """Empty matches are reported the way `finditer` does, one per position."""
    [result] = _run("ab", "x*")
    assert [(m.start, m.end) for m in result.matches] == [(0, 0), (1, 1), (2, 2)]


@pytest.mark.parametrize(
    ("flags", "pattern", "text", "found"),
    [
        ((), "abc", "ABC abc", ["abc"]),
        (("IGNORECASE",), "abc", "ABC abc", ["ABC", "abc"]),
        ((), "^b", "a\nb", []),
        (("MULTILINE",), "^b", "a\nb", ["b"]),
        ((), "a.b", "a\nb", []),
        (("DOTALL",), "a.b", "a\nb", ["a\nb"]),
        (("VERBOSE",), "a b  # spaces and comments are ignored", "ab", ["ab"]),
        (("IGNORECASE", "MULTILINE"), "^X", "a\nx", ["x"]),
    ],
)
def test_flags(flags: tuple[str, ...], pattern: str, text: str, found: list[str]) -> None:
    """The four flag names switch on the matching regex flags, alone or together."""
    [result] = _run(text, pattern, flags=flags)
    assert [m.match for m in result.matches] == found


def test_unknown_flag_is_invalid_payload() -> None:
    """A flag name outside IGNORECASE/MULTILINE/DOTALL/VERBOSE fails the call as InvalidPayload."""
    with pytest.raises(InvalidPayload, match="unknown regex flag 'ASCII'"):
        _run("x", "x", flags=["ASCII"])


def test_bad_pattern_fails_the_whole_call() -> None:
    """A pattern that does not compile raises BadPattern naming it, even after good patterns."""
    with pytest.raises(BadPattern, match=r"pattern '\(unclosed' does not compile: missing \)") as info:
        _run("text", "text", "(unclosed")
    assert isinstance(info.value, PermanentError)


def test_max_matches_exactly_reached_is_not_truncated() -> None:
    """With exactly max_matches matches, all are kept and truncated is False."""
    [result] = _run("a a a", "a", max_matches=3)
    assert (result.count, result.truncated, len(result.matches)) == (3, False, 3)


def test_more_than_max_matches_is_truncated() -> None:
    """Past max_matches, the first ones are kept, count stops there, and truncated is True."""
    [result] = _run("a1 a2 a3 a4", r"a\d", max_matches=2)
    assert [m.match for m in result.matches] == ["a1", "a2"]
    assert (result.count, result.truncated, result.error) == (2, True, None)


@pytest.mark.parametrize(("timeout_s", "max_matches"), [(0, 10), (-1.0, 10), (1.0, 0)])
def test_nonpositive_limits_are_a_programming_error(timeout_s: float, max_matches: int) -> None:
    """timeout_s <= 0 (which regex reads as 'no timeout') and max_matches < 1 raise ValueError."""
    with pytest.raises(ValueError, match="must be positive"):
        run_patterns("a", ["a"], timeout_s=timeout_s, max_matches=max_matches)


@pytest.mark.timeout(10)
def test_catastrophic_pattern_times_out_within_budget() -> None:
    """(a+)+$ on 'a'*5000+'!' reports a timeout within its budget plus slack; the next pattern runs."""
    started = time.monotonic()
    catastrophic, plain = run_patterns(EVIL_TEXT, [CATASTROPHIC, "!"], timeout_s=1.0, max_matches=10)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + SLACK_S
    assert catastrophic == PatternResult(
        pattern=CATASTROPHIC,
        matches=[],
        count=0,
        truncated=False,
        error=PatternError(
            type="timeout", message="pattern timed out after 1.0 s (catastrophic backtracking?)"
        ),
    )
    assert plain.matches == [Match(match="!", start=5000, end=5001, groups=[], named={})]
    assert plain.error is None


@pytest.mark.timeout(10)
def test_timeout_keeps_matches_found_before_it() -> None:
    """Matches found before the budget ran out are returned with the timeout error."""
    [result] = run_patterns("x1 x2 x3 " + EVIL_TEXT, [r"x\d|(a+)+$"], timeout_s=0.3, max_matches=10)
    assert [m.match for m in result.matches] == ["x1", "x2", "x3"]
    assert result.count == 3
    assert result.error is not None and result.error.type == "timeout"


@pytest.mark.timeout(10)
def test_budget_covers_the_whole_iteration() -> None:
    """Many cheap matches cannot add up past the budget: it is per pattern, not per match."""
    started = time.monotonic()
    [result] = run_patterns("a" * 3_000_000, ["a"], timeout_s=0.2, max_matches=10_000_000)
    elapsed = time.monotonic() - started
    assert result.error is not None and result.error.type == "timeout"
    assert 0 < result.count < 3_000_000
    assert elapsed < 0.2 + SLACK_S


@pytest.mark.timeout(10)
def test_regex_timeout_is_one_clock_for_a_finditer() -> None:
    """regex's finditer(timeout=) is one CPU clock for the whole iteration, as our bound assumes."""
    # Upstream: _regex.c sets state->start_time = clock() when the scanner is created and
    # check_timed_out compares clock() - start_time with the timeout. If an upgrade changes that,
    # tasks.extract._run must change too.
    matches = regex.compile("a").finditer("aaaa", timeout=0.1)
    next(matches)
    spin_until = time.monotonic() + 0.3
    while time.monotonic() < spin_until:  # burn CPU, as building our Match objects does
        pass
    with pytest.raises(TimeoutError):
        next(matches)


def test_wall_clock_deadline_stops_between_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the wall-clock deadline (CPU-starved process) a pattern stops after the current match."""
    readings = iter([100.0, 100.0])  # the deadline is set at 100 s, the first check is in time

    def fake_monotonic() -> float:
        return next(readings, 200.0)  # ... and every later reading is past it

    monkeypatch.setattr(tasks.extract, "monotonic", fake_monotonic)
    [result] = run_patterns("a1 a2 a3", [r"a\d"], timeout_s=5.0, max_matches=10)
    assert [m.match for m in result.matches] == ["a1", "a2"]
    assert result.error == PatternError(
        type="timeout", message="pattern timed out after 5.0 s (catastrophic backtracking?)"
    )


def test_results_serialise_to_plain_json_types() -> None:
    """model_dump() gives the JSON shape the extract job returns."""
    [result] = _run("k=v", r"(?P<key>\w)=(\w)")
    assert result.model_dump() == {
        "pattern": r"(?P<key>\w)=(\w)",
        "matches": [{"match": "k=v", "start": 0, "end": 3, "groups": ["k", "v"], "named": {"key": "k"}}],
        "count": 1,
        "truncated": False,
        "error": None,
    }
