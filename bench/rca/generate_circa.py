#!/usr/bin/env python3
"""Generate RCAEval-style root-cause cases with CIRCA's public simulator.

Uses `circa.experiment.simulation` from PyPI's `circa-clue` (Li et al., KDD'22):
a random DAG with a single sink (the SLI), linear-Gaussian vector
auto-regression, and 1-3 root causes whose fault pushes the SLI past 3 sigma.
Each case becomes a directory the `vigil rca` command reads:

    data.csv          time,n0_value,n1_value,...   (unix seconds, one row a minute)
    inject_time.txt   when the fault was reported (optionally --late steps late)
    graph.json        {"nodes": [...], "edges": [{"from", "to", "relation": "causes"}]}
                      (optionally with --drop-edges of the true edges removed)
    root_causes.txt   the true root causes, one a line (ground truth, not read by rca)

Entity names are `n<index>`: no underscore, as the RCAEval header rule needs.
"""
import argparse
import json
import os

import numpy as np
from circa.experiment.simulation import generate_case, generate_sedag

START = 1_700_000_000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--edges", type=int, default=100)
    parser.add_argument("--graphs", type=int, default=10, help="random graphs")
    parser.add_argument("--cases-per-graph", type=int, default=10)
    parser.add_argument("--late", type=int, default=0, help="steps the reported time lags the fault")
    parser.add_argument("--drop-edges", type=float, default=0.0, help="share of graph edges left out of graph.json")
    parser.add_argument("--length-normal", type=int, default=1440, help="normal steps before the fault (CIRCA's default)")
    parser.add_argument("--seed", type=int, default=519)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    index = 0
    for _ in range(args.graphs):
        # Same construction as circa.experiment.simulation.generate, kept open
        # here so the edge list can be written (and thinned) per case.
        matrix = generate_sedag(num_node=args.nodes, num_edge=args.edges, rng=rng)
        prod = np.eye(args.nodes)
        weight = np.eye(args.nodes)
        for _ in range(1, args.nodes):
            prod = prod @ matrix
            weight += prod
        results, causes_of = np.where(matrix)  # matrix[result, cause] != 0
        edges = sorted(zip(causes_of.tolist(), results.tolist()))
        for _ in range(args.cases_per_graph):
            case = generate_case(weight=weight, length_normal=args.length_normal, rng=rng)
            data = case._time_series  # noqa: SLF001 (the simulator's own array)
            causes = sorted(case._causes)  # noqa: SLF001
            folder = os.path.join(args.out, f"case-{index:04d}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "data.csv"), "w", encoding="utf-8") as out:
                out.write("time," + ",".join(f"n{i}_value" for i in range(args.nodes)) + "\n")
                for row, values in enumerate(data):
                    out.write(str(START + 60 * row) + "," + ",".join(f"{v:.3f}" for v in values) + "\n")
            with open(os.path.join(folder, "inject_time.txt"), "w", encoding="utf-8") as out:
                out.write(f"{START + 60 * (args.length_normal + args.late)}\n")
            kept = [e for e in edges if rng.random() >= args.drop_edges]
            graph = {
                "nodes": [f"n{i}" for i in range(args.nodes)],
                "edges": [{"from": f"n{c}", "to": f"n{r}", "relation": "causes"} for c, r in kept],
            }
            with open(os.path.join(folder, "graph.json"), "w", encoding="utf-8") as out:
                json.dump(graph, out)
            with open(os.path.join(folder, "root_causes.txt"), "w", encoding="utf-8") as out:
                out.write("".join(f"n{c}\n" for c in causes))
            index += 1
    print(f"wrote {index} cases to {args.out}")


if __name__ == "__main__":
    main()
