#!/usr/bin/env python3
"""Run the peer baselines BARO (robust scorer) and N-Sigma from PyPI's `fse-baro`
on every case directory under a folder, writing `peer-<name>.json`
(`{"ranking": [entities best first], "seconds": wall time}`) into each case,
which `vigil bench rca` scores beside Vigil in one table.

Both get the reported `inject_time` as given, as RCAEval runs them. Ranked
metric columns become entities (the header up to its first `_`), first
occurrence wins.
"""
import argparse
import json
import os
import time

import pandas as pd
from baro.root_cause_analysis import nsigma, robust_scorer

PEERS = {"baro": robust_scorer, "nsigma": nsigma}


def to_entities(columns):
    seen, ranking = set(), []
    for column in columns:
        entity = column.split("_", 1)[0]
        if entity not in seen:
            seen.add(entity)
            ranking.append(entity)
    return ranking


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", help="folder of case directories")
    args = parser.parse_args()
    folders = sorted(
        os.path.join(args.cases, name)
        for name in os.listdir(args.cases)
        if os.path.isfile(os.path.join(args.cases, name, "data.csv"))
    )
    for folder in folders:
        data = pd.read_csv(os.path.join(folder, "data.csv"))
        with open(os.path.join(folder, "inject_time.txt"), encoding="utf-8") as f:
            inject_time = int(float(f.read().strip()))
        for name, method in PEERS.items():
            started = time.perf_counter()
            result = method(data=data, inject_time=inject_time, dataset=None)
            seconds = time.perf_counter() - started
            with open(os.path.join(folder, f"peer-{name}.json"), "w", encoding="utf-8") as out:
                json.dump({"ranking": to_entities(result["ranks"]), "seconds": seconds}, out)
    print(f"ran {', '.join(PEERS)} on {len(folders)} cases in {args.cases}")


if __name__ == "__main__":
    main()
