"""What the lists' empty state says of the filters in use (templates/admin/change_list.html)."""

from django import template
from django.core.exceptions import FieldDoesNotExist
from django.db.models.constants import LOOKUP_SEP

register = template.Library()


@register.simple_tag
def filters_in_use(cl) -> list[str]:
    """The filters narrowing the list ``cl`` now, as the sidebar says them (``brand: VISA``, ``expired: Yes``): the
    list's own filters, its date drill-down, and any other field in the address (the token page links to the audit
    log's rows of one object, ``?object_type=token&object_id=…``)."""
    params = cl.get_filters_params()
    params.pop("q", None)
    shown = []
    for spec in cl.filter_specs:
        if not any(name in params for name in spec.expected_parameters()):
            continue
        selected = [choice["display"] for choice in spec.choices(cl) if choice.get("selected")]
        values = [value for name in spec.expected_parameters() for value in params.get(name, [])]
        shown.append(f"{spec.title}: {', '.join(str(s) for s in selected) if selected else ', '.join(values)}")
        for name in spec.expected_parameters():
            params.pop(name, None)
    if cl.date_hierarchy:
        drilled = [f"{cl.date_hierarchy}__{part}" for part in ("year", "month", "day")]
        date = "-".join(f"{params.pop(name)[-1]:0>2}" for name in drilled if name in params)
        if date:
            shown.append(f"{cl.opts.get_field(cl.date_hierarchy).verbose_name}: {date}")
    for name, values in params.items():
        try:
            label = cl.opts.get_field(name.split(LOOKUP_SEP)[0]).verbose_name
        except FieldDoesNotExist:
            label = name
        shown.append(f"{label}: {', '.join(values)}")
    return shown
