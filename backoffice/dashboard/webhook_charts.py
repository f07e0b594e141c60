"""The webhook charts: attempts per hour over the last day (is it working now?) and the share of finished deliveries
that succeeded over a day and a week (did merchants get their events?). Drawn like every chart here (charts.py)."""

from datetime import datetime

from backoffice.dashboard.charts import Cell, Chart, Rect, Tick
from core.admin_display import counted

WINDOWS = {"24h": "Last 24 h", "7d": "Last 7 days"}  # notification_selectors.delivery_health's windows
HOUR_TICKS_EVERY = 3  # a label under every third hour, counted back from the current one


def success_rate(succeeded: int, total: int) -> float | None:
    return 100 * succeeded / total if total else None


def rate_shown(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1f} %"


# ------------------------------------------------------------------------------------------------------------
# Attempts per hour
# ------------------------------------------------------------------------------------------------------------
def attempts_per_hour_chart(per_hour: dict[datetime, tuple[int, int]]) -> Chart:
    """One bar per hour, the current one last: the attempts that succeeded at the bottom, those that failed stacked
    on top. Attempts rather than deliveries: a delivery is only dead-lettered after a day and more of retries, while
    an endpoint that fails now fails its attempts now."""
    hours = list(per_hour)
    succeeded = sum(ok for ok, _ in per_hour.values())
    attempts = sum(ok + failed for ok, failed in per_hour.values())
    last_ok, last_failed = per_hour[hours[-1]]
    chart = Chart(
        id="chart-webhook-hourly",
        title=f"Webhook attempts per hour, last {len(hours)} hours",
        description=(
            f"{counted(attempts, 'attempt')} from {hours[0]:%H:00} to now (UTC), "
            f"{rate_shown(success_rate(succeeded, attempts))} succeeded; this hour: "
            f"{counted(last_ok + last_failed, 'attempt')}, {last_failed:,} failed."
        ),
        x_label="Hour (UTC)",
        y_label="Attempts",
        height=260,
        columns=["Hour (UTC)", "Attempts", "Succeeded", "Failed", "Success rate"],
        legend=[("seg-succeeded", "succeeded"), ("seg-dead", "failed")],
    )
    scale = chart.count_axis(max(ok + failed for ok, failed in per_hour.values()))
    slot = (chart.plot_right - chart.plot_left) / len(hours)
    width = slot * 0.7
    for index, (hour, (ok, failed)) in enumerate(per_hour.items()):
        x = round(chart.plot_left + index * slot + (slot - width) / 2, 1)
        name = f"{hour:%Y-%m-%d %H:00}"
        bottom = chart.plot_bottom
        for count, outcome in ((ok, "succeeded"), (failed, "failed")):
            if count:
                height = count * scale
                chart.bars.append(
                    Rect(
                        x=x,
                        y=round(bottom - height, 1),
                        width=round(width, 1),
                        height=round(height, 1),
                        css=f"bar seg seg-{'succeeded' if outcome == 'succeeded' else 'dead'}",
                        title=f"{name} UTC: {counted(count, 'attempt')} {outcome}",
                        value=count,
                        key=f"{name}:{outcome}",
                    )
                )
                bottom -= height
        if not ok + failed:  # a quiet hour keeps a hairline on the axis: zero, not missing
            chart.bars.append(
                Rect(
                    x=x,
                    y=chart.plot_bottom - 1,
                    width=round(width, 1),
                    height=1,
                    css="bar bar-zero",
                    title=f"{name} UTC: no attempt",
                    value=0,
                    key=name,
                )
            )
        if (len(hours) - 1 - index) % HOUR_TICKS_EVERY == 0:
            chart.x_ticks.append(Tick(round(x + width / 2, 1), f"{hour:%H:00}"))
        chart.rows.append(
            [
                Cell(name),
                Cell(f"{ok + failed:,}"),
                Cell(f"{ok:,}"),
                Cell(f"{failed:,}"),
                Cell(rate_shown(success_rate(ok, ok + failed))),
            ]
        )
    return chart


# ------------------------------------------------------------------------------------------------------------
# Delivery success over a day and a week
# ------------------------------------------------------------------------------------------------------------
def _rate_sentence(window: str, succeeded: int, finished: int) -> str:
    rate = success_rate(succeeded, finished)
    if rate is None:
        return f"{WINDOWS[window]}: no delivery finished"
    return f"{WINDOWS[window]}: {rate:.1f} % succeeded ({succeeded:,} of {finished:,} finished)"


def success_rate_chart(webhooks: dict) -> Chart:
    """One 0–100 % bar per window: the deliveries that succeeded, then those dead-lettered, among those finished."""
    chart = Chart(
        id="chart-webhook-success",
        title="Webhook delivery success rate",
        description="; ".join(
            _rate_sentence(window, webhooks[f"succeeded_{window}"], webhooks[f"finished_{window}"])
            for window in WINDOWS
        )
        + ".",
        x_label="Share of the deliveries finished in the window (%)",
        y_label="Window",
        height=200,
        margin_left=120,
        columns=["Window", "Success rate", "Succeeded", "Failed (dead letters)", "Finished"],
        legend=[("seg-succeeded", "succeeded"), ("seg-dead", "failed (dead letter)")],
        percent_grid=True,
        table_open=True,
    )
    span = chart.plot_right - chart.plot_left
    chart.x_ticks = [
        Tick(round(chart.plot_left + percent * span / 100, 1), f"{percent} %") for percent in range(0, 101, 25)
    ]
    slot = (chart.plot_bottom - chart.plot_top) / len(WINDOWS)
    height = slot * 0.6
    for index, (window, label) in enumerate(WINDOWS.items()):
        succeeded, finished = webhooks[f"succeeded_{window}"], webhooks[f"finished_{window}"]
        rate = success_rate(succeeded, finished)
        y = chart.plot_top + index * slot + (slot - height) / 2
        chart.y_ticks.append(Tick(round(y + height / 2, 1), label))
        chart.rows.append(
            [
                Cell(label),
                Cell(rate_shown(rate)),
                Cell(f"{succeeded:,}"),
                Cell(f"{finished - succeeded:,}"),
                Cell(f"{finished:,}"),
            ]
        )
        if rate is None:
            chart.notes.append(Tick(round(y + height / 2 + 4, 1), "no delivery finished"))
            continue
        sentence = _rate_sentence(window, succeeded, finished)
        good = span * succeeded / finished
        for x, w, count, outcome in (
            (chart.plot_left, good, succeeded, "succeeded"),
            (chart.plot_left + good, span - good, finished - succeeded, "dead"),
        ):
            if count:
                chart.bars.append(
                    Rect(
                        x=round(x, 1),
                        y=round(y, 1),
                        width=round(w, 1),
                        height=round(height, 1),
                        css=f"bar seg seg-{outcome}",
                        title=sentence,
                        value=count,
                        key=f"{window}:{outcome}",
                    )
                )
    return chart
