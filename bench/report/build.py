"""Build a whole report: read the results database, compute, write every format and figure.

The one function the CLI, the tests and the benchmark call is :func:`build_report`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.design import traits
from bench.errors import StoreError
from bench.redact import redact_url
from bench.report import appendix as appendix_mod
from bench.report import tables
from bench.report.importances import importances
from bench.report.tables import Analysis, ReportData
from bench.report.text import write_text_atomic

__all__ = [
    "FORMATS", "REPORT_METRICS", "ReportResult", "load_report_data", "build_report", "default_results_url",
    "lesionwise_view",
]

FORMATS: tuple[str, ...] = ("latex", "markdown", "csv", "html")
#: what Table 1 / Table 2 tabulate and rank by: whole-image Dice + HD95, or BraTS 2023 lesion-wise ones
REPORT_METRICS: tuple[str, ...] = ("dice", "lesion_dice")


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the folder, every file, the numbers and any notes for the user."""

    out_dir: Path
    files: list[Path]
    analysis: Analysis
    notes: list[str] = field(default_factory=list)
    ranking: Any = None  # bench.analysis.ranking.Ranking with --rank


def default_results_url(workspace: Path | str | None = None) -> str:
    ws = Path(workspace or ".").resolve()
    return f"sqlite:///{ws / '.bench' / 'results.db'}"


def _record_dict(rec: Any) -> dict[str, Any]:
    if rec is None:
        return {}
    if isinstance(rec, dict):
        return dict(rec)
    if dataclasses.is_dataclass(rec) and not isinstance(rec, type):
        return dataclasses.asdict(rec)
    if hasattr(rec, "_asdict"):
        return dict(rec._asdict())
    return {k: v for k, v in vars(rec).items() if not k.startswith("_")}


# The record may name its fields a little differently; these are the names looked for, in order.
_ALIASES = {
    "spec": ("spec", "spec_toml", "spec_text", "toml"),
    "design": ("design",),
    "factors": ("factors",),
    "baseline": ("baseline", "baseline_label"),
    "mlflow_parent_run_id": ("mlflow_parent_run_id", "parent_run_id", "mlflow_run_id"),
    "mlflow_experiment_name": ("mlflow_experiment_name", "mlflow_experiment", "name"),
    "optuna_storage": ("optuna_storage", "storage", "storage_url"),
    "study_name": ("study_name", "optuna_study", "optuna_study_name"),
}


def _normalise_record(raw: dict[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for key, names in _ALIASES.items():
        for n in names:
            if raw.get(n) not in (None, ""):
                out[key] = raw[n]
                break
    ids = raw.get("mlflow_ids") or raw.get("mlflow") or {}
    if isinstance(ids, dict):
        for k in ("parent_run_id", "run_id"):
            if ids.get(k) and not out.get("mlflow_parent_run_id"):
                out["mlflow_parent_run_id"] = ids[k]
    factors = out.get("factors")
    if isinstance(factors, str):
        out["factors"] = [f.strip() for f in re.split(r"[,\s]+", factors) if f.strip()]
    elif isinstance(factors, dict):
        out["factors"] = list(factors)
    return out


def _experiment_names(df: pd.DataFrame) -> list[str]:
    if df is None or df.empty:
        return []
    col = next((c for c in ("name", "experiment", "experiment_name") if c in df.columns), df.columns[0])
    d = df
    for t in ("created_at", "updated_at", "experiment_id", "id"):
        if t in df.columns:
            d = df.sort_values(t, kind="mergesort")
            break
    return [str(x) for x in d[col]]


def _sqlite_path(url: str) -> Path | None:
    s = str(url)
    if "://" not in s:
        return Path(s)
    if s.startswith("sqlite:///"):
        path = s[len("sqlite:///"):].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)
    return None


def load_report_data(url: str, experiment: str | None = None) -> ReportData:
    """Read one experiment from the results database (default: the only or most recent one)."""
    from bench.store import queries

    sqlite_path = _sqlite_path(url)
    if sqlite_path is not None and not sqlite_path.exists():
        raise StoreError(f"no results database at {sqlite_path}; run `bench run` first, or pass --results URL")
    try:
        names = _experiment_names(queries.experiments(url))
    except StoreError:
        raise
    except Exception as exc:  # an unreachable server, a file that is not a results DB, ...
        raise StoreError(f"cannot read the results database {redact_url(url)}: {exc}") from exc
    if not names:
        raise StoreError(f"the results database {redact_url(url)} has no experiment yet; run `bench run` first")
    if experiment is None:
        experiment = names[-1]
    elif experiment not in names:
        raise StoreError(f"unknown experiment {experiment!r} in {redact_url(url)}; known experiments: {', '.join(names)}")
    conf = queries.configurations(url, experiment)
    return ReportData(
        experiment=experiment,
        configurations=conf,
        cells=queries.cells(url, experiment),
        case_metrics=queries.case_metrics(url, experiment),
        curves=queries.curves(url, experiment),
        record=_normalise_record(_record_dict(queries.experiment_record(url, experiment))),
    )


def _spec_cohort(record: dict[str, Any]) -> str | None:
    import tomllib

    try:
        section = tomllib.loads(str(record.get("spec") or "")).get("evaluation", {})
    except tomllib.TOMLDecodeError:
        return None
    cohort = section.get("lesionwise") if isinstance(section, dict) else None
    return str(cohort).lower() if cohort else None


def lesionwise_view(data: ReportData) -> tuple[ReportData, str]:
    """The report data with each case's Dice / HD95 replaced by its BraTS 2023 lesion-wise values, and the
    caption sentence stating the cohort's parameters. StoreError when the experiment has none."""
    from bench.evaluation.lesionwise import LESION_HD95_PENALTY, get_cohort

    cm = data.case_metrics
    cohort = _spec_cohort(data.record)
    if cohort is None or cm is None or "lesion_dice" not in cm or cm["lesion_dice"].notna().sum() == 0:
        raise StoreError(
            f"--metric lesion_dice: experiment {data.experiment!r} has no lesion-wise values; set "
            "[evaluation] lesionwise = \"gli\" (or ssa, ped, men, met) in its spec and run it"
        )
    c = get_cohort(cohort)
    view = cm[cm["lesion_dice"].notna()].copy()
    view["dice"] = view["lesion_dice"]
    view["hd95"] = view["lesion_hd95"]
    view["penalty"] = False  # the 373.13 mm whole-image penalty does not apply to these values
    note = (
        f"Dice and HD95 are the BraTS 2023 lesion-wise values of cohort {c.name.upper()} ({c.title}): reference "
        f"lesions are 26-connected components merged by {c.dilation} dilation(s) with the 18-neighbourhood, "
        f"lesions of at most {c.threshold_mm3:g} mm^3 are ignored, every predicted component touching a dilated "
        f"lesion matches it, a missed lesion or a false-positive component scores Dice 0 and HD95 "
        f"{LESION_HD95_PENALTY:g} mm; HD95 is the area-weighted robust Hausdorff distance (maximum of the two "
        f"directed 95th percentiles). Found/missed lesions and false positives over all evaluations: "
        f"{int(view['num_tp'].sum())}/{int(view['num_fn'].sum())}/{int(view['num_fp'].sum())}."
    )
    return dataclasses.replace(data, case_metrics=view), note


def _safe_dirname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "experiment"


def _log_mlflow(paths: list[Path], data: ReportData, workspace: Path | None, tracking_uri: str | None) -> str | None:
    """Attach the figures to the experiment's MLflow parent run; a failure is a note, never an error."""
    run_id = data.record.get("mlflow_parent_run_id")
    if not run_id or not paths:
        return None
    try:
        from bench.runner import tracking

        ws = Path(workspace or ".")
        if tracking_uri is None:
            db = ws / ".bench" / "mlflow.db"
            if not db.exists():  # never create an MLflow store as a side effect of a report
                return None
            tracking_uri = tracking.default_tracking_uri(ws)
        tracker = tracking.Tracker(
            tracking_uri, str(data.record.get("mlflow_experiment_name") or data.experiment),
            tracking.default_artifact_root(ws),
        )
        import warnings

        with warnings.catch_warnings():  # the failure becomes the report's note instead
            warnings.simplefilter("ignore")
            ok = tracker.log_parent_artifacts(str(run_id), [str(p) for p in paths], artifact_path="report")
    except Exception as exc:  # the report never fails because MLflow does
        return f"figures not logged to MLflow ({type(exc).__name__}: {exc})"
    if not ok:
        return f"figures not logged to MLflow ({getattr(tracker, 'last_error', None) or 'unknown error'})"
    return f"figures logged to MLflow run {run_id} (artifacts/report)"


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, float_format="%.6g")


def build_report(
    results: str | ReportData,
    experiment: str | None = None,
    *,
    out: Path | str = "reports",
    formats: Sequence[str] = FORMATS,
    baseline: str | None = None,
    config: str | None = None,
    plots: bool = True,
    pdf: bool | None = None,
    workspace: Path | str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    log_mlflow: bool = True,
    n_boot: int = 2000,
    seed: int = 0,
    progress: bool = False,
    metric: str = "dice",
    rank: bool = False,
    permutations: int = 10000,
) -> ReportResult:
    """Write the report of one experiment into ``<out>/<experiment>/`` and return what was written.

    ``results``: a results-database URL or an already loaded :class:`ReportData`. ``formats``: any of
    latex, markdown, csv, html. ``pdf``: compile report.tex with pdflatex (None: when pdflatex is installed and
    LaTeX is asked for). ``storage``: the Optuna storage of a search (default: the workspace's journal).
    ``baseline`` / ``config``: labels for the tests and for Table 2. Unknown experiments or
    labels raise :class:`StoreError` naming the known ones. ``metric = "lesion_dice"`` tabulates and ranks by
    the BraTS 2023 lesion-wise Dice and HD95 of the spec's cohort, written to ``<out>/<experiment>-lesionwise/``.
    ``rank``: add the challenge-style ranking (:mod:`bench.analysis.ranking`) by ``metric``, with
    ``permutations`` for its pairwise tests and ``n_boot`` resamples for its stability.
    """
    from bench.bars import progress_bar

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise StoreError(f"unknown report format(s) {', '.join(bad)}; accepted: {', '.join(FORMATS)}")
    from bench.report.rules_view import RULE_METRICS, rules_view

    metric_name = metric

    if metric not in REPORT_METRICS and metric not in RULE_METRICS:
        raise StoreError(f"--metric {metric!r}: expected one of {', '.join((*REPORT_METRICS, *RULE_METRICS))}")
    data = results if isinstance(results, ReportData) else load_report_data(results, experiment)
    metric_note = None
    if metric == "lesion_dice":
        data, metric_note = lesionwise_view(data)
    elif metric in RULE_METRICS:
        if isinstance(results, ReportData):
            raise StoreError(f"--metric {metric}: needs the results database (the stored per-case values)")
        from bench.store import queries

        data, metric_note = rules_view(data, queries.case_values(results, data.experiment), metric)
        metric = "dice"  # the view holds the year's values in the Dice / HD95 columns
    fwd = None
    if traits(data.design).confirms:  # Table 1 from the confirmation runs; the selection path as an appendix
        from bench.report import forward as forward_mod

        data, fwd = forward_mod.confirmation_data(data)
    steps = progress_bar(total=4 + len(formats), desc="report", unit="step", disable=not progress, leave=False)
    a = tables.analyse(data, baseline=baseline, config=config, n_boot=n_boot, seed=seed)
    a.metric_note = metric_note
    ranking = _ranking(data, a.labels, metric, n_boot, permutations, seed) if rank else None
    importances(a, data, Path(workspace) if workspace else None, storage)
    ap = appendix_mod.build_appendix(data)
    steps.update(1)
    suffix = "-lesionwise" if metric == "lesion_dice" else (f"-{metric_name}" if metric_note else "")
    out_dir = Path(out) / (_safe_dirname(data.experiment) + suffix)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    from bench.evaluation.missed import missed_notes

    notes: list[str] = missed_notes(data.case_metrics)  # a region never predicted is never just a low mean
    figures: list[tuple[str, str]] = []
    rank_fig = None
    if ranking is not None:
        from bench.report import ranking as rank_out

        rank_files = rank_out.write_files(ranking, out_dir, formats, plots=plots)
        files += rank_files
        rank_fig = rank_out.PLOT_STEM if plots else None
    if plots:
        from bench.report import plots as plots_mod

        fig_paths = plots_mod.make_plots(a, data.curves, out_dir)
        files += fig_paths
        stems = list(dict.fromkeys(p.stem for p in fig_paths))
        figures = [(s, plots_mod.CAPTIONS[s]) for s in stems]
        if rank_fig:
            fig_paths = fig_paths + [p for p in rank_files if p.stem == rank_fig]
        if log_mlflow:
            note = _log_mlflow(fig_paths, data, Path(workspace) if workspace else None, tracking_uri)
            if note:
                notes.append(note)
    steps.update(1)
    if ap.spec:
        files.append(write_text_atomic(out_dir / "spec.toml", ap.spec if ap.spec.endswith("\n") else ap.spec + "\n"))
    if "latex" in formats:
        from bench.report import latex

        head = latex.FRAGMENT_HEADER.format(experiment=latex.escape(data.experiment))
        files.append(write_text_atomic(out_dir / "table1.tex", head + latex.table1(a)))
        files.append(write_text_atomic(out_dir / "table2.tex", head + latex.table2(a)))
        files.append(write_text_atomic(out_dir / "stats.tex", head + latex.stats_tables(a)))
        files.append(write_text_atomic(out_dir / "effects.tex", head + latex.effects(a)))
        files.append(write_text_atomic(out_dir / "appendix.tex", head + latex.appendix(ap)))
        tex_figs = [(f"{s}.pdf", c) for s, c in figures]
        tex_doc = latex.document(a, ap, tex_figs)
        if ranking is not None:
            section = rank_out.latex(ranking, rank_fig and f"{rank_fig}.pdf")
            tex_doc = _insert_before(tex_doc, "\\clearpage\n\\section*{Reproducibility}", section)
        tex = write_text_atomic(out_dir / "report.tex", tex_doc)
        files.append(tex)
        import shutil

        if pdf or (pdf is None and shutil.which("pdflatex")):
            try:
                files.append(latex.compile_pdf(tex))
            except RuntimeError as exc:
                if pdf:
                    raise
                notes.append(f"report.pdf not built: {str(exc).splitlines()[0]}")
        steps.update(1)
    if "markdown" in formats:
        from bench.report import markdown

        files.append(write_text_atomic(out_dir / "table1.md", markdown.table1(a)))
        files.append(write_text_atomic(out_dir / "table2.md", markdown.table2(a)))
        files.append(write_text_atomic(out_dir / "effects.md", markdown.effects(a) or "No factorial effects.\n"))
        md_doc = markdown.document(a, ap, [(f"{s}.png", c) for s, c in figures])
        if ranking is not None:
            section = rank_out.markdown(ranking, rank_fig and f"{rank_fig}.png")
            md_doc = _insert_before(md_doc, "## Reproducibility", section)
        files.append(write_text_atomic(out_dir / "report.md", md_doc))
        steps.update(1)
    if "csv" in formats:
        files.append(write_text_atomic(out_dir / "table1.csv", _csv(a.table1_frame())))
        t2 = a.table2.copy()
        t2.insert(0, "statistic", t2.index)
        files.append(write_text_atomic(out_dir / "table2.csv", _csv(t2)))
        if a.effects is not None:
            files.append(write_text_atomic(out_dir / "effects.csv", _csv(a.effects)))
        if a.importances is not None:
            files.append(write_text_atomic(out_dir / "importances.csv", _csv(a.importances)))
        files.append(write_text_atomic(out_dir / "case_values.csv", _csv(_case_frame(a))))
        files.append(write_text_atomic(out_dir / "cells.csv", _csv(ap.timings)))
        if not ap.trick_cost.empty:
            files.append(write_text_atomic(out_dir / "trick_cost.csv", _csv(ap.trick_cost)))
        steps.update(1)
    if "html" in formats:
        from bench.report import html

        html_doc = html.document(a, ap, [(f"{s}.png", c) for s, c in figures])
        if ranking is not None:
            section = rank_out.html(ranking, rank_fig and f"{rank_fig}.png")
            html_doc = _insert_before(html_doc, "<h2>Reproducibility</h2>", section)
        files.append(write_text_atomic(out_dir / "report.html", html_doc))
        steps.update(1)
    steps.close()
    if fwd is not None:
        files += forward_mod.write_selection(fwd, out_dir, formats)
        if fwd.note:
            notes.append(fwd.note)
    if a.effects_note:
        notes.append(a.effects_note)
    return ReportResult(out_dir=out_dir, files=files, analysis=a, notes=notes, ranking=ranking)


def _ranking(data: ReportData, labels: list[str], metric: str, n_boot: int, permutations: int, seed: int) -> Any:
    from bench.analysis import ranking as ranking_stats

    what = f"experiment {data.experiment!r}"
    inp = ranking_stats.rank_input(data.case_metrics, ranking_stats.metric_set(metric), labels=labels, what=what)
    return ranking_stats.rank(inp, metric=metric, n_boot=n_boot, n_permutations=permutations, seed=seed, what=what)


def _insert_before(doc: str, marker: str, section: str) -> str:
    """``section`` placed before the last ``marker`` of ``doc``, or at its end when there is none."""
    head, sep, tail = doc.rpartition(marker)
    return head + section + sep + tail if sep else doc + section


def _case_frame(a: Analysis) -> pd.DataFrame:
    """Per-case values (mean over replicates) of every configuration, long format with one column per metric."""
    frames = []
    for i, label in enumerate(a.labels):
        if not a.has_data(i):
            continue
        cols: dict[str, Any] = {"label": label, "case_id": a.case_ids}
        for m in tables.METRICS:
            cols[f"{m[0]}_{m[1]}"] = a.case_values[m][i]
        frames.append(pd.DataFrame(cols))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return df.dropna(how="all", subset=[c for c in df.columns if c not in ("label", "case_id")]) if not df.empty else df

