"""Will TensorRT 10.3's ONNX parser (JetPack 6) take this graph? Checked against its operator
list, kept as data in data/tensorrt_10_3_onnx_ops.json with where it comes from.

Checks: the default-domain opset is within the parser's range, every node (subgraphs included)
is a standard ONNX operator the parser supports, no model-local functions or custom domains are
left, and operators whose axes must be constants get constants.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

OPS_FILE = Path(__file__).resolve().parent / "data" / "tensorrt_10_3_onnx_ops.json"
_CONSTANT_AXES_INPUT = {"Squeeze": 1, "Unsqueeze": 1, "ReduceL1": 1, "ReduceL2": 1, "ReduceLogSum": 1,
                        "ReduceLogSumExp": 1, "ReduceMax": 1, "ReduceMean": 1, "ReduceMin": 1, "ReduceProd": 1,
                        "ReduceSum": 1, "ReduceSumSquare": 1, "CumSum": 1, "TopK": 1}


@lru_cache(maxsize=1)
def tensorrt_ops() -> dict:
    return json.loads(OPS_FILE.read_text())


def _nodes(graph):
    """Every node of a graph and of its subgraphs (If / Loop / Scan bodies)."""
    for node in graph.node:
        yield node, graph
        for attribute in node.attribute:
            if attribute.g.node:
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def check_graph(model) -> list[str]:
    """Problems that would stop TensorRT 10.3 parsing `model` (an onnx.ModelProto); [] if none."""
    table = tensorrt_ops()
    supported, later = table["supported"], table["not_in_10_3"]
    problems = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not table["opset_min"] <= opset.version <= table["opset_max"]:
            problems.append(f"opset {opset.version} is outside TensorRT {table['tensorrt']}'s "
                            f"{table['opset_min']}-{table['opset_max']}")
    if len(model.functions):
        problems.append("model-local functions left in the graph: " + ", ".join(f.name for f in model.functions))
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    unsupported: dict[str, int] = {}
    for node, graph in _nodes(model.graph):
        if node.domain not in ("", "ai.onnx"):
            unsupported[f"{node.domain}::{node.op_type}"] = unsupported.get(f"{node.domain}::{node.op_type}", 0) + 1
            continue
        if node.op_type not in supported:
            unsupported[node.op_type] = unsupported.get(node.op_type, 0) + 1
            continue
        index = _CONSTANT_AXES_INPUT.get(node.op_type)
        local = constants | {init.name for init in graph.initializer}
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in local:
            problems.append(f"{node.op_type} node {node.name!r} takes its axes from a computed tensor "
                            f"({node.input[index]}); TensorRT {table['tensorrt']} needs a constant")
    for op, count in sorted(unsupported.items()):
        since = f" (supported only from TensorRT {later[op]})" if op in later else ""
        problems.append(f"{op} x{count} is not in TensorRT {table['tensorrt']}'s ONNX operator list{since}")
    return problems
