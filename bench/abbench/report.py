"""The results: rows of figures, and the fixed-width and Markdown tables they print as."""

from __future__ import annotations

import statistics


class Results:
    def __init__(self):
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.extra: dict = {}

    def add(
        self,
        workload,
        system,
        samples=None,
        *,
        unit="s",
        ratio=None,
        ratio_to=None,
        target=None,
        met=None,
        note=None,
        value=None,
        **more,
    ) -> dict:
        samples = [x for x in (samples or []) if x is not None]
        row = {
            "workload": workload,
            "system": system,
            "unit": unit,
            "samples": samples,
            "median": statistics.median(samples) if samples else value,
            "min": min(samples) if samples else value,
            "ratio": ratio,
            "ratio_to": ratio_to,
            "target": target,
            "met": met,
            "note": note,
            **more,
        }
        self.rows.append(row)
        return row

    def na(self, workload, system, reason) -> None:
        self.add(workload, system, unit="n/a", note=reason)


def fmt_value(v, unit) -> str:
    if v is None:
        return "n/a"
    if unit == "s":
        return f"{v:.3f} s" if v < 100 else f"{v:.1f} s"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"
    if unit == "MB":
        return f"{v:.0f} MB"
    if unit == "count":
        return f"{v:.0f}"
    return f"{v}"


def table_lines(rows, markdown=False) -> list[str]:
    head = ["workload", "system", "median", "min", "ratio", "target", "met?"]
    body = []
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "NO")
        ratio = "" if r["ratio"] is None else ("≥" if r.get("lower_bound") else "") + f"{r['ratio']:.2f}x"
        system = r["system"] + (
            f" [{r['note']}]" if r.get("note") and (r["unit"] == "n/a" or r.get("lower_bound")) else ""
        )
        body.append(
            [
                r["workload"],
                system,
                fmt_value(r["median"], r["unit"]) if r["unit"] != "n/a" else "n/a",
                fmt_value(r["min"], r["unit"]) if r["unit"] != "n/a" else "",
                ratio,
                r["target"] or "",
                met,
            ]
        )
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in body]
        return out
    w = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    w[1] = min(w[1], 80)
    line = lambda cells: "  ".join(
        (c if i == 1 and len(c) <= w[1] else (c[: w[1] - 1] + "…" if i == 1 else c)).ljust(w[i])
        if i < 2
        else c.rjust(w[i])
        for i, c in enumerate(cells)
    )
    return [line(head), "  ".join("-" * x for x in w)] + [line(b) for b in body]
