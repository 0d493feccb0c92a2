"""Building blocks every dlcourse dashboard shares: variables, filters, panel helpers, links.

Every panel and every query points at the `$datasource` variable, never at a datasource
uid, so the same JSON works on any Grafana whatever its Prometheus datasource is called.
"""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from .jobs import Jobs

TAG = "dlcourse"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Grafana's built-in datasource (annotations, alert events): the same uid on every Grafana.
GRAFANA = dm.DataSourceRef(type_val="grafana", uid="-- Grafana --")

# Every dlcourse_* series comes from the exporter picked by $instance.
INSTANCE = 'instance=~"$instance"'

# Users who belong to hub groups, none of which is selected in $group. Hiding these (rather
# than keeping only members of the selected groups) keeps accounts in no group at all
# (instructor, TAs, Linux accounts outside the hub) visible: on a shared GPU the instructor
# must see every process that holds memory, whatever section is selected.
OUT_OF_SECTION = (
    f"dlcourse_hub_user_group_info{{{INSTANCE}}} unless on(user) "
    f'dlcourse_hub_user_group_info{{{INSTANCE}, group=~"$group"}}'
)


# Overrides that draw a query's series as a dashed line without fill (limits, totals).
DASHED = [
    dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
    dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
]


def in_section(expr: str) -> str:
    """Per-user series of `expr`, less the users of sections not selected in $group."""
    return f"({expr}) unless on(user) ({OUT_OF_SECTION})"


# ---- variables -------------------------------------------------------------------------


def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(
    name: str, label: str, query: str, *, include_all: bool = True, multi: bool = True
) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(include_all)
    )
    if include_all:
        # A regex that matches everything keeps queries short when "All" is chosen.
        variable = variable.all_value(".*").current(
            dm.VariableOption(selected=True, text=["All"], value=["$__all"])
        )
    return variable


def instance_variable(jobs: Jobs) -> db.QueryVariable:
    return query_variable(
        "instance",
        "Exporter",
        f"label_values(dlcourse_exporter_build_info{{{jobs.selector('exporter')}}}, instance)",
    )


def group_variable() -> db.QueryVariable:
    return query_variable(
        "group", "Section", f"label_values(dlcourse_hub_user_group_info{{{INSTANCE}}}, group)"
    )


def standard_variables(jobs: Jobs) -> list[db.DatasourceVariable | db.QueryVariable]:
    return [datasource_variable(), instance_variable(jobs), group_variable()]


# ---- dashboards ------------------------------------------------------------------------


def new_dashboard(uid: str, title: str, description: str, extra_tags: list[str]) -> db.Dashboard:
    """A dashboard with the shared tags, time settings and links to its siblings."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, *extra_tags])
        .editable()
        .timezone("browser")
        .time("now-1h", "now")
        .refresh("30s")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .annotation(
            # Grafana's own annotations and alert events, as in every dashboard it creates.
            db.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(GRAFANA)
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
        .link(
            db.DashboardLink("Course dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def finish(builder: db.Dashboard) -> dict:
    """The dashboard as plain JSON data, panels numbered in layout order (ids must be unique)."""
    model = builder.build()
    next_id = 1
    for panel in model.panels or []:
        panel.id_val = next_id
        next_id += 1
        for child in getattr(panel, "panels", None) or []:
            child.id_val = next_id
            next_id += 1
    return json.loads(json.dumps(model, cls=JSONEncoder))


def student_link() -> dict[str, str]:
    """A data link on a column of user names to that student's dashboard."""
    return {
        "title": "Student detail",
        "url": "/d/dlcourse-student/student-detail?var-user=${__value.raw}"
        "&${datasource:queryparam}&${instance:queryparam}&${__url_time_range}",
    }


# ---- panels ----------------------------------------------------------------------------


def query(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    table_format: bool = False,
) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    q = q.instant() if instant else q.range()
    if legend:
        q = q.legend_format(legend)
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


def _grid(w: int, h: int) -> dm.GridPos:
    return dm.GridPos(w=w, h=h, x=0, y=0)


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    *,
    w: int = 12,
    h: int = 8,
    stacked: bool = False,
    bars: bool = False,
    max_value: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets)
        .unit(unit)
        .min(0)
        .grid_pos(_grid(w, h))
        .fill_opacity(60 if bars or stacked else 10)
        .legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(cm.LegendPlacement.BOTTOM)
        )
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
    )
    if max_value is not None:
        panel = panel.max(max_value)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS)
    return panel


def stat_panel(
    title: str,
    description: str,
    unit: str,
    targets: list[prometheus.Dataquery],
    *,
    w: int = 3,
    h: int = 4,
    thresholds: list[tuple[float | None, str]] | None = None,
) -> stat.Panel:
    steps = thresholds or [(None, "green")]
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets)
        .unit(unit)
        .grid_pos(_grid(w, h))
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            db.ThresholdsConfig()
            .mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=v, color=c) for v, c in steps])
        )
    )


def table_panel(
    title: str, description: str, unit: str, targets: list[prometheus.Dataquery], *, w: int, h: int
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(targets)
        .unit(unit)
        .grid_pos(_grid(w, h))
    )


def row(title: str) -> db.Row:
    return db.Row(title)
