"""User errors on the command line in one line: jsonargparse's usage errors condensed to the key at fault, what is
wrong and the closest valid option (:class:`PINNArgumentParser`), and config files checked for what jsonargparse
reports without naming the file. ``pinn.cli.main`` prints a :class:`UserError` as ``pinn: error: ...``, exit code 2."""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import os
import re
import sys
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningArgumentParser

from pinn import compat


class UserError(ValueError):
    """An error the user can fix (bad value, missing file); the CLI prints it in one line and exits 2."""


# lines of jsonargparse's nested "Does not validate against any of the Union subtypes" report that say nothing
_NOISE = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")


def _closest(name: str, candidates: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def _names(path: str, init: bool = False) -> list[str]:
    """The public names in module ``path``, or the ``__init__`` arguments of class ``path``; [] if not importable."""
    try:
        if not init:
            return [n for n in dir(importlib.import_module(path)) if n[:1].isupper()]
        module, _, name = path.rpartition(".")
        return list(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        return []


def usage_error(message: str, options: list[str]) -> str:
    """jsonargparse's error ``message`` (often ~100 lines of usage and nested Union reports) in one line: the key at
    fault, what is wrong with it and, for a misspelling, the closest of ``options`` (``--model.width``, ...)."""
    unknown = re.search(r"unrecognized arguments: (\S+)|does not accept option '([^']+)'", message)
    if unknown:
        key = "--" + (unknown.group(1) or unknown.group(2)).lstrip("-").split("=")[0]
        return f"unknown option {key}" + (_closest(key, options) or "; `--help` lists the options")
    key = ".".join(re.findall(r'Parser key "([^"]+)"', message))  # outer to inner: data.problem, material, mu
    given = re.search(r"(?:Got value|Given value): (.*)", message)
    value = given.group(1).strip() if given else "?"
    no_class = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message)
    no_arg = re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message)
    choices = re.search(r"Expected a typing\.Literal\[(.*?)\]", message)
    wrong_type = re.search(r"Expected a <class '(\w+)'>\. Got value: (.*)", message)
    if no_class:
        module, name = no_class.groups()
        detail = f"no class {name} in {module}" + _closest(name, _names(module), f"{module}.")
    elif no_arg:
        cls, name = no_arg.groups()
        detail = f"{cls} has no argument {name!r}" + _closest(name, _names(cls, init=True))
    elif choices:
        allowed = [str(c) for c in ast.literal_eval(f"[{choices.group(1)}]")]
        detail = f"{value!r} is not one of {', '.join(allowed)}" + _closest(value, allowed)
    elif wrong_type:
        detail = f"expected {wrong_type.group(1)}, got {wrong_type.group(2).strip()!r}"
    else:
        lines = [re.sub(r'Parser key "[^"]+":', "", ln).strip(" -") for ln in message.splitlines()]
        detail = next((ln for ln in lines if ln and not ln.startswith(_NOISE)), message.strip())
    detail = " ".join(detail.split())[:400]
    return f"--{key}: {detail}" if key else detail


class PINNArgumentParser(LightningArgumentParser):
    """The CLI's parser: a usage error is one line on stderr, ``pinn: error: ...``, and exit code 2 (jsonargparse
    prints the whole usage first). ``PINN_DEBUG=1`` keeps jsonargparse's full report."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error or os.environ.get("PINN_DEBUG"):
            super().error(message, ex)  # nested parsers raise, and jsonargparse catches that
        parser = getattr(ex, "subcommand_parser", None) or self
        options = compat.long_options(parser)
        print(f"pinn: error: {usage_error(message, options)}", file=sys.stderr)
        self.exit(2)


def check_config_files(argv: list[str]) -> None:
    """An empty (or comment-only) config file is an error naming the file; jsonargparse's says only "Unexpected
    config"."""
    files = [b for a, b in zip(argv, argv[1:]) if a in ("-c", "--config")]
    files += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    for file in map(Path, files):
        if not file.is_file():
            continue  # a missing file, or YAML text given inline: jsonargparse's message names it
        try:
            content = yaml.safe_load(file.read_text())
        except yaml.YAMLError as err:
            raise UserError(f"{file}: not valid YAML: {' '.join(str(err).split())[:300]}") from None
        if content is None:
            raise UserError(f"{file}: the config file is empty; it needs sections such as trainer:, model:, data: "
                            "(configs/plane_wave.yaml is a complete one).")
        if not isinstance(content, dict):
            raise UserError(f"{file}: a config file is a YAML mapping of sections (trainer:, model:, data:, ...), "
                            f"not a {type(content).__name__}.")
