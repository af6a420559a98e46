"""The targets of issue 6, read off a benchmark's results (met or missed, never asserted),
and the results as a Markdown table."""

from __future__ import annotations

from typing import Any

ROUTES = [
    ("bare", "bare Flask route (ceiling)"),
    ("documents_busiest", "Mes documents, busiest doctor"),
    ("documents_typical", "Mes documents, typical doctors"),
    ("patients_busiest", "Mes patients, busiest doctor"),
    ("patients_typical", "Mes patients, typical doctors"),
    ("viewer", "viewer page"),
    ("content", "PDF content (decrypt, verify, audit)"),
    ("ingest", "POST /api/v1/documents, 200 KB"),
]
STATEMENT_KEYS = {"documents_busiest": "documents", "documents_typical": "documents",
                  "patients_busiest": "patients", "patients_typical": "patients",
                  "viewer": "viewer", "content": "content", "ingest": "ingest"}
WORKER_LIMIT_MB = 150


def _largest_and_smallest(results: dict[str, Any]) -> tuple[str, str]:
    sizes = list(results["sizes"])
    return sizes[-1], sizes[0]


def _target(name: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": value, "met": met}


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    largest, smallest = _largest_and_smallest(results)
    big = results["sizes"][largest]
    small = results["sizes"][smallest]
    out = []
    for who in ("busiest", "typical"):
        route = big["routes"][f"documents_{who}"]
        out.append(_target(
            f"Mes documents ({who}) at {largest} >= 25% of bare, p99 < 50 ms",
            f"{route['ratio_to_bare']:.0%} of bare, p99 {route['p99_ms']} ms",
            route["ratio_to_bare"] >= 0.25 and route["p99_ms"] < 50 and not route["errors"]))
    for who in ("busiest", "typical"):
        key = f"documents_{who}"
        ratio = big["routes"][key]["rps"] / small["routes"][key]["rps"]
        out.append(_target(f"Mes documents ({who}): {largest} >= 80% of {smallest}",
                           f"{ratio:.0%}", ratio >= 0.8))
    ingest = big["routes"]["ingest"]
    floor = big["ingest_floor"]["rps"]
    out.append(_target("ingest >= 200 documents/s and >= 50% of the floor loop",
                       f"{ingest['rps']:.0f}/s, {ingest['rps'] / floor:.0%} of "
                       f"{floor:.0f}/s",
                       ingest["rps"] >= 200 and ingest["rps"] >= 0.5 * floor
                       and not ingest["errors"]))
    for page in ("documents", "patients"):
        counts = {size: data["sql_statements"][page] for size, data in results["sizes"].items()}
        constant = all(len(set(by_page.values())) == 1 for by_page in counts.values())
        shown = "; ".join(f"{size}: " + ", ".join(f"{n} at page {p}" for p, n in c.items())
                          for size, c in counts.items())
        out.append(_target(f"{page}: same SQL statements whatever the page size", shown,
                           constant))
    worst = max(max(data["worker_rss_mb"]) for data in results["sizes"].values())
    out.append(_target(f"each gunicorn worker < {WORKER_LIMIT_MB} MB resident",
                       f"largest {worst} MB", worst < WORKER_LIMIT_MB))
    return out


def _statements(data: dict[str, Any], key: str) -> str:
    value = data["sql_statements"].get(STATEMENT_KEYS.get(key, ""), "")
    if isinstance(value, dict):
        return "/".join(str(n) for n in value.values())
    return str(value)


def markdown(results: dict[str, Any]) -> str:
    load = ", ".join(f"{x:.1f}" for x in results["machine"]["load_before"])
    lines = [f"# Relais benchmark, {results['date']}", "",
             f"gunicorn {results['settings']['workers']} workers, wrk "
             f"{results['settings']['connections']} connections, "
             f"{results['settings']['duration_s']} s per route after "
             f"{results['settings']['warmup_s']} s warm-up; {results['machine']['cpus']} CPUs; "
             f"load average before: {load}.",
             ""]
    sizes = list(results["sizes"])
    smallest = sizes[0]
    for size, data in results["sizes"].items():
        lines += [f"## {data['documents']:,} documents ({size})", "",
                  f"Busiest doctor: {data['busiest_doctor_letters']:,} visible letters; typical "
                  f"doctors: about {data['typical_doctor_letters']:,}.", "",
                  "| route | req/s | p50 ms | p95 ms | p99 ms | errors | × bare | "
                  f"vs {smallest} | SQL/request |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for key, label in ROUTES:
            r = data["routes"][key]
            base = results["sizes"][smallest]["routes"][key]["rps"]
            lines.append(
                f"| {label} | {r['rps']:,.0f} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                f"{r['errors']} | {r['ratio_to_bare']:.0%} | {r['rps'] / base:.0%} | "
                f"{_statements(data, key)} |")
        floor = data["ingest_floor"]["rps"]
        lines += [f"| ingest floor: psycopg INSERT + COMMIT of 200 KB | {floor:,.0f} | | | | | | "
                  f"| 1 |", "",
                  f"Workers' resident memory after the run: "
                  f"{', '.join(f'{m} MB' for m in data['worker_rss_mb'])}.", ""]
        t = data["tables"]
        per_doc = t["database_bytes"] / max(1, t["rows"]["documents"])
        lines += [f"On disk: database {t['database_bytes'] / 2**20:,.0f} MiB "
                  f"({per_doc / 1024:.1f} KiB per document); "
                  + ", ".join(f"{name} {b / 2**20:,.0f} MiB" for name, b in t["bytes"].items())
                  + f"; {t['rows']['audit_events']:,} audit events.", ""]
    lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    for target in results["targets"]:
        lines.append(f"| {target['target']} | {target['measured']} | "
                     f"{'met' if target['met'] else '**missed**'} |")
    lines += ["", "SQL/request for the lists: at two page sizes (documents 5/25, patients "
              "10/50). Sizes on disk are read before the run; they include the free space left "
              "by earlier runs' 200 KB letters (removed after each run, then vacuumed), so the "
              "first run after a build shows the seeded sizes.", ""]
    return "\n".join(lines)
