"""What a node refuses, with the reason and the fix.

Parameter values outside their choices, sampling settings that make no Proposer, unknown domains.
"""
from __future__ import annotations

from rcl_interfaces.msg import SetParametersResult

from ..serving import map_check_from, proposer_from
from ..spec_training import catalogue
from .parameters import settings_values


def check_sampling_settings(node, settings, params):
    """An on-set-parameters result: refused unless the sampling settings, changed by `params`, make a Proposer."""
    try:
        values = settings_values(node, settings, params)
        proposer_from(values)
        if "robot.footprint" in values:  # the placement node's map settings too
            map_check_from(values)
    except ValueError as err:
        return SetParametersResult(successful=False, reason=str(err))
    return SetParametersResult(successful=True)


def check_choice(name: str, value, choices) -> str | None:
    """None when `value` is allowed, else the reason (for an on-set-parameters callback)."""
    return None if value in choices else f"{name}={value!r}: use one of {', '.join(map(repr, choices))}"


def check_choices(params, choices: dict):
    """An on-set-parameters result refusing any parameter in `choices` ({name: allowed}) set to another value."""
    for p in params:
        if p.name in choices:
            reason = check_choice(p.name, p.value, choices[p.name])
            if reason:
                return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def check_domains(domains, model_dir) -> str | None:
    """None when every domain is known (built-in, or a spec-carrying prior in `model_dir`), else the first unknown."""
    known = catalogue(model_dir)
    unknown = [d for d in domains if d not in known]
    if unknown:
        return (f"unknown domain {unknown[0]!r}: known domains are {', '.join(known)} (a domain of your own is "
                f"known once its general prior, `dualdiff train --spec`, is in model_dir {model_dir})")
    return None
