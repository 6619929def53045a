"""The same acceptance run against the code before and after a change, alternating in the same
minutes (the machines here drift too much for numbers of different runs to be compared).

    .venv/bin/python bench/compare.py BEFORE_CHECKOUT [--messages 2000] [--rounds 2] [--database sqlite|postgresql]

BEFORE_CHECKOUT is a checkout of the earlier commit (a `git worktree`); the relay of each side runs
from its own tree with the settings this bench writes."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import acceptance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--json", type=Path, default=acceptance.HERE / "results" / "compare.json")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": acceptance.REPO}
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="relay-compare-") as tmp:
        for number in range(args.rounds):
            for side, tree in trees.items():
                acceptance.REPO = tree  # the relay, its templates and PYTHONPATH come from this tree
                folder = Path(tmp) / f"{side}-{number}"
                folder.mkdir()
                if args.database == "sqlite":
                    run = acceptance.relay(f"sqlite:///{folder}/relay.db", args.messages, args.sessions, folder)
                else:
                    pg = acceptance.fresh_postgres()
                    try:
                        run = acceptance.relay(pg, args.messages, args.sessions, folder)
                    finally:
                        acceptance.drop_postgres(pg)
                runs[side].append(run)
                print(f"{side:>6} ({args.database}): {run['accept_msgs_per_s']:.1f} accepted/s, "
                      f"p99 {run['latency_p99_s']:.2f} s", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"database": args.database, "messages": args.messages, "runs": runs},
                                    indent=2) + "\n")


if __name__ == "__main__":
    main()
