"""Every command line the README and the docs quote names a command and options that really exist."""

import re
import shlex
from pathlib import Path

import pytest

import config

from external_embeddings.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(page):
    """(line number, words) of each command in the page's shell blocks (continuations joined) and inline code."""
    found, fenced, block, pending, start = [], False, False, "", 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith("```"):  # a shell block, or one with no language (commands and their output)
            fenced = not fenced
            block = fenced and line.strip() in ("```", "```bash", "```sh", "```console", "```shell")
            continue
        line = line.removeprefix("$ ")
        if not block:  # a command quoted inline, in backticks
            found += [(number, m.split()) for m in re.findall(r"`(python [^`]+)`", line)]
            continue
        text = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
        if not pending:
            start = number
        pending += text.rstrip().removesuffix("\\") + " "
        if text.rstrip().endswith("\\"):
            continue
        words, pending = pending.split(), ""
        if words:
            found.append((start, words))
    return found


def parsers():
    """{command: set of its option strings} from the real argparse parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    return {name: {o for action in p._actions for o in action.option_strings} for name, p in sub.choices.items()}


def problems(page):
    options, settings = parsers(), {k for k in vars(config) if k.isupper()}
    out = []
    for number, words in command_lines(page):
        for segment in " ".join(words).split("&&"):
            try:
                parts = shlex.split(segment.split("|")[0])
            except ValueError:
                parts = segment.split()
            where = f"{page.name}:{number}"
            if parts[:3] == ["python", "-m", "external_embeddings"]:
                if len(parts) < 4 or parts[3] not in options:
                    out.append(f"{where}: no command {parts[3:4]}")
                    continue
                out += [f"{where}: {parts[3]} has no option {o}" for o in _options(parts[4:])
                        if o not in options[parts[3]]]
            elif len(parts) > 1 and parts[0] == "python" and parts[1].endswith(".py"):
                script = ROOT / parts[1]
                if not script.is_file():
                    out.append(f"{where}: no script {parts[1]}")
                elif parts[1].startswith("pretrained_"):
                    out += [f"{where}: no setting {o}" for o in _options(parts[2:]) if o[2:] not in settings]
                else:  # a benchmark: its argparse options are written in its source, or common.py's
                    source = script.read_text(encoding="utf-8")
                    if "common.parse_args" in source:
                        source += (ROOT / "bench" / "common.py").read_text(encoding="utf-8")
                    out += [f"{where}: {parts[1]} has no option {o}" for o in _options(parts[2:])
                            if f'"{o}"' not in source]
    return out


def _options(words):
    return [w.split("=")[0] for w in words if re.match(r"--[A-Za-z]", w)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_commands_name_real_options(page):
    assert problems(page) == []


def test_the_check_sees_a_wrong_option(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\npython -m external_embeddings serve --store s \\\n    --modles m\n"
                    "python pretrained_word_embeddings.py --EPOCS=2\npython -m external_embeddings fly\n```\n"
                    "Or `python -m external_embeddings predict --stor s`.\n")
    assert problems(page) == ["page.md:2: serve has no option --modles", "page.md:4: no setting --EPOCS",
                              "page.md:5: no command ['fly']",
                              "page.md:7: predict has no option --stor"]
