"""Pure regex runner: caller-supplied patterns over a text, each bounded in time and in matches.

Patterns come from API callers, so any of them may backtrack catastrophically. Each runs under
the `regex` module's `timeout=`; one that runs out of time reports an error in its own result
(keeping the matches found so far) and the others still run. A pattern that does not compile is
the caller's mistake and fails the whole call with `BadPattern` (permanent: a retry cannot help).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import monotonic  # by name, so a test can replace this module's clock alone
from types import MappingProxyType
from typing import Final, Literal

import regex
from pydantic import BaseModel, ConfigDict

from tasks.errors import BadPattern, InvalidPayload

# The flag names `tasks.models.RegexFlag` accepts, and what they mean to the `regex` module.
FLAGS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "IGNORECASE": regex.IGNORECASE,
        "MULTILINE": regex.MULTILINE,
        "DOTALL": regex.DOTALL,
        "VERBOSE": regex.VERBOSE,
    }
)


class _Frozen(BaseModel):
    """Results are values: frozen so a caller cannot mutate what another caller also holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Match(_Frozen):
    """One match: its text, its span in the input, and its groups (None for a group that did
    not take part in the match)."""

    match: str
    start: int
    end: int
    groups: list[str | None]
    named: dict[str, str | None]


class PatternError(_Frozen):
    """Why a pattern's result is incomplete. Only "timeout" exists: the other failure, a pattern
    that does not compile, fails the whole call instead."""

    type: Literal["timeout"]
    message: str


class PatternResult(_Frozen):
    """One pattern's matches, in input order, at most `max_matches` of them.

    `count` is len(matches); `truncated` says more matches existed beyond `max_matches`. After a
    timeout `truncated` is False (whether more existed is unknown) and `error` says so.
    """

    pattern: str
    matches: list[Match]
    count: int
    truncated: bool
    error: PatternError | None


def run_patterns(
    text: str,
    patterns: Sequence[str],
    *,
    flags: Sequence[str] = (),
    timeout_s: float,
    max_matches: int,
) -> list[PatternResult]:
    """Run each pattern over `text`, each within `timeout_s` seconds, keeping `max_matches` matches.

    Every pattern is compiled (with all `flags`) before any runs, so a bad one fails the call
    before any time is spent matching. Raises `BadPattern` naming the pattern that does not
    compile, and `InvalidPayload` for a flag name other than those in `FLAGS`.
    """
    if timeout_s <= 0 or max_matches < 1:
        raise ValueError(f"timeout_s and max_matches must be positive, not {timeout_s!r}, {max_matches!r}")
    compiled = [_compile(pattern, _flag_bits(flags)) for pattern in patterns]
    return [
        _run(pattern, compiled_pattern, text, timeout_s, max_matches)
        for pattern, compiled_pattern in zip(patterns, compiled, strict=True)
    ]


def _flag_bits(names: Sequence[str]) -> int:
    """OR the named flags together; an unknown name is a payload the API would have refused."""
    bits = 0
    for name in names:
        if name not in FLAGS:
            raise InvalidPayload(f"unknown regex flag {name!r}; expected one of {', '.join(FLAGS)}")
        bits |= FLAGS[name]
    return bits


def _compile(pattern: str, flag_bits: int) -> regex.Pattern[str]:
    """Compile one pattern, or raise `BadPattern` with the pattern and the compiler's reason."""
    try:
        compiled: regex.Pattern[str] = regex.compile(pattern, flag_bits)
    except regex.error as exc:
        raise BadPattern(f"pattern {pattern!r} does not compile: {exc}") from None
    return compiled


def _run(
    pattern: str, compiled: regex.Pattern[str], text: str, timeout_s: float, limit: int
) -> PatternResult:
    """Collect up to `limit` matches of one pattern within `timeout_s` seconds in total.

    How the total stays bounded: `regex` takes the start time when `finditer` creates its scanner
    and, while matching, compares `clock() - start_time` with the timeout (upstream `_regex.c`:
    `check_timed_out`, and `state->start_time = clock()` in `state_init_2`). So one `timeout=`
    is a single budget for the whole iteration, not one per `next()`, and it counts the
    process's CPU time, including ours between matches. tests/test_extract.py pins this down,
    so an upgrade that changed it would fail a test rather than let a pattern run `timeout_s`
    per match. CPU time is not wall time (a process waiting for a core does not spend it), so a
    wall-clock deadline is also checked after each match: the pattern stops at whichever of the
    two runs out first.
    """
    deadline = monotonic() + timeout_s
    matches: list[Match] = []
    truncated = timed_out = False
    try:
        for found in compiled.finditer(text, timeout=timeout_s):
            if len(matches) == limit:
                truncated = True  # the (limit+1)th match exists: say so, don't keep it
                break
            matches.append(
                Match(
                    match=found.group(),
                    start=found.start(),
                    end=found.end(),
                    groups=list(found.groups()),
                    named=found.groupdict(),
                )
            )
            if monotonic() > deadline:
                timed_out = True
                break
    except TimeoutError:  # what `regex` raises when the budget runs out mid-search
        timed_out = True
    error = None
    if timed_out:
        error = PatternError(
            type="timeout",
            message=f"pattern timed out after {float(timeout_s)} s (catastrophic backtracking?)",
        )
    return PatternResult(
        pattern=pattern, matches=matches, count=len(matches), truncated=truncated, error=error
    )
