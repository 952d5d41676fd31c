"""The argv of one run, with W&B's command macros expanded exactly as the W&B agent does.

W&B expands a list item that is exactly `${name}` (it may become several items, e.g. `${args}`),
and `${envvar:NAME}` anywhere inside an item (an unset NAME becomes the text NAME, as in W&B).
Everything else that looks like `${...}` (Hydra or OmegaConf interpolations) is left untouched.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

WHOLE_ITEM_MACROS = (
    "env", "interpreter", "program", "args", "args_no_hyphens", "args_no_boolean_flags",
    "args_json", "args_json_file",
)
DEFAULT_COMMAND = ("${env}", "${interpreter}", "${program}", "${args}")
ENVVAR = re.compile(r"\$\{envvar:([A-Za-z0-9_]*)\}")


def _flag_value(value: Any) -> str:
    # The W&B agent formats values with Python's str(): True, 0.001, [1, 2], {'a': 1}.
    return str(value)


def build_argv(
    command: tuple[str, ...] | None,
    params: Mapping[str, Any],
    *,
    program: str | None,
    env: Mapping[str, str],
    args_json_file: str,
    interpreter: str = "python",
) -> list[str]:
    """Expand `command` (W&B's default when None) for one run's parameters."""
    json_text = json.dumps(dict(params))
    flags = [f"--{k}={_flag_value(v)}" for k, v in params.items()]
    expansions: dict[str, list[str]] = {
        "env": ["/usr/bin/env"],
        "interpreter": [interpreter],
        "program": [program] if program else [],
        "args": flags,
        "args_no_hyphens": [f"{k}={_flag_value(v)}" for k, v in params.items()],
        "args_no_boolean_flags": [
            (f"--{k}" if v else None) if isinstance(v, bool) else f"--{k}={_flag_value(v)}" for k, v in params.items()
        ],
        "args_json": [json_text],
        "args_json_file": [args_json_file],
    }
    argv: list[str] = []
    for item in command or DEFAULT_COMMAND:
        item = ENVVAR.sub(lambda m: env.get(m.group(1), m.group(1)), str(item))
        if item.startswith("${") and item.endswith("}") and item[2:-1] in expansions:
            argv += [a for a in expansions[item[2:-1]] if a is not None]
        else:
            argv.append(item)
    return argv


def uses_args_json_file(command: tuple[str, ...] | None) -> bool:
    return "${args_json_file}" in (command or DEFAULT_COMMAND)
