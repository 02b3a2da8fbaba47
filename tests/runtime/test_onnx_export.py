"""ONNX export: valid graphs TensorRT 10.3 can parse, and ONNX Runtime equal to PyTorch."""
import dataclasses
import json

import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ov2_ros.errors import MissingInputError
from ov2_ros.model.generate import GenerationConfig, PrefixSession, TorchSession, generate
from ov2_ros.model.prompt import encode_prompt
from ov2_ros.runtime.backend import TorchBackend, open_backend
from ov2_ros.runtime.onnx_graphs import GRAPHS, OnnxFolderError, OnnxManifest
from ov2_ros.runtime.onnx_ops import check_graph, tensorrt_ops
from ov2_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend
from ov2_ros.runtime.ort_attention import PREFILL_QUERY_BLOCKS
from tests.runtime.conftest import vision_input

# Two groups of 4 canvases and a last group of 3: windows of unequal length, so the exported
# encoder pads the short one and masks it.
GRID = [[4, 4, 6], [4, 4, 6], [3, 4, 6]]


@pytest.mark.parametrize("variant", ["fp32", "fp16", "positions"])
def test_every_graph_is_valid_onnx_that_tensorrt_10_3_parses(exported, variant):
    _, folder = exported[variant]
    manifest = OnnxManifest.load(folder)
    assert manifest.dtype == ("fp16" if variant == "fp16" else "fp32") and manifest.opset <= 20
    for name in GRAPHS:
        model = onnx.load(str(folder / f"{name}.onnx"))
        onnx.checker.check_model(model, full_check=True)
        assert check_graph(model) == [], name
        ops = {node.op_type for node in model.graph.node}
        assert not ops & {"Attention", "RotaryEmbedding", "RMSNormalization"}
        assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)
        assert len(model.functions) == 0


def test_fp32_exports_carry_onnx_runtime_variants_with_fused_attention(exported):
    _, folder = exported["fp32"]
    manifest = OnnxManifest.load(folder)
    assert sorted(manifest.ort_graphs) == ["extend", "prefill", "vision"]
    for name, entry in manifest.ort_graphs.items():
        ops = [node.op_type for node in onnx.load(str(folder / entry["file"])).graph.node]
        per_layer = PREFILL_QUERY_BLOCKS if name == "prefill" else 1  # the prefill's causal blocks
        fused = "GroupQueryAttention" if name == "extend" else "MultiHeadAttention"  # extend: on the cache in place
        assert ops.count(fused) == 2 * per_layer and "Softmax" not in ops, name
    assert OnnxManifest.load(exported["fp16"][1]).ort_graphs == {}


def test_all_graphs_share_one_weights_file_holding_each_tensor_once(exported):
    model, folder = exported["fp32"]
    manifest = OnnxManifest.load(folder)
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # 7 graphs (4 of them hold the LLM: prefill, decode, the ONNX Runtime prefill and extend), yet
    # about one copy of the weights (constant folding may add a few derived tensors).
    assert parameter_bytes <= manifest.weights["bytes"] < 1.25 * parameter_bytes
    graph_bytes = sum(entry["bytes"] for entry in [*manifest.graphs.values(), *manifest.ort_graphs.values()])
    assert graph_bytes < 0.5 * parameter_bytes


def test_the_op_check_names_what_tensorrt_10_3_cannot_parse():
    floats = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, 4, 8, 16])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    nodes = [helper.make_node("Attention", ["q", "k", "v"], ["a"]),
             helper.make_node("Unsqueeze", ["a", "axes"], ["u"]),  # axes from a graph input: not a constant
             helper.make_node("FusedMatMul", ["u", "u"], ["y"], domain="com.microsoft")]
    graph = helper.make_graph(nodes, "g", [floats("q"), floats("k"), floats("v"), axes], [floats("y")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)])
    problems = " | ".join(check_graph(model))
    assert "opset 23 is outside TensorRT 10.3's 9-20" in problems
    assert "Attention x1 is not in TensorRT 10.3's ONNX operator list (supported only from TensorRT 10.14)" in problems
    assert "com.microsoft::FusedMatMul" in problems
    assert "Unsqueeze node" in problems and "needs a constant" in problems
    table = tensorrt_ops()
    assert table["sources"] and "RotaryEmbedding" not in table["supported"] and "MatMul" in table["supported"]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("variant, tolerance", [("fp32", 1e-4), ("positions", 1e-4), ("fp16", 2e-2)])
def test_onnxruntime_vision_tokens_equal_pytorch(exported, variant, tolerance, fused):
    model, folder = exported[variant]
    vision = vision_input(GRID)
    expected = TorchBackend(model, None).vision_tokens(vision).float()
    got = OnnxRuntimeBackend(folder, threads=1, fused_attention=fused).vision_tokens(vision)
    assert got.shape == expected.shape == (sum(c * (r * w // 4 - 2) for c, r, w in GRID), 48)  # padding dropped
    scale = expected.abs().max()
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("variant, tolerance, fused", [("fp32", 1e-4, True), ("fp32", 1e-4, False), ("fp16", 2e-2, False)])
def test_onnxruntime_prefill_and_decode_logits_equal_pytorch(exported, tokenizer, variant, tolerance, fused):
    model, folder = exported[variant]
    backend = OnnxRuntimeBackend(folder, threads=1, fused_attention=fused)
    vision = vision_input([[4, 4, 6]])
    tokens = TorchBackend(model, tokenizer).vision_tokens(vision)
    prompt = encode_prompt(tokenizer, "When does the gripper grasp the cube?", vision.positions_thw.numpy(), 30.0)
    reference, session = TorchSession(model), backend.session()
    pairs = [(reference.prefill(prompt.input_ids, tokens), session.prefill(prompt.input_ids, tokens))]
    for token in [17, 40, 5, 99, 230]:
        pairs.append((reference.step(token), session.step(token)))
    assert session.can_extend == fused  # fused: steps through the extend graph, on its buffers
    assert session.length == len(prompt.input_ids) + 5  # the cache grew by one per step
    for expected, got in pairs:
        expected = expected.float()
        torch.testing.assert_close(got, expected, rtol=0, atol=tolerance * expected.abs().max())


def test_the_block_causal_prefill_equals_pytorch_at_every_prompt_length(exported):
    # ONNX Runtime's prefill cuts its rows into PREFILL_QUERY_BLOCKS causal blocks from the
    # prompt's length at run time: prompts shorter than the blocks (empty blocks) and of every
    # remainder give PyTorch's logits and cache.
    model, folder = exported["fp32"]
    backend = OnnxRuntimeBackend(folder, threads=1)
    generator = torch.Generator().manual_seed(0)
    for length in [2, 3, PREFILL_QUERY_BLOCKS, 5, 6, 7, 29]:
        ids = torch.randint(7, model.config.llm.vocab_size, (length,), generator=generator).tolist()
        reference, session = TorchSession(model), backend.session()
        expected, (got, ours) = reference.prefill(ids, None).float(), backend.prefill(ids, None)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * expected.abs().max())
        cache = reference.cache
        for part, theirs in zip(ours, [t for pair in zip(cache.keys, cache.values) for t in pair], strict=True):
            assert part.shape[2] == length
            torch.testing.assert_close(torch.from_numpy(part), theirs, rtol=0, atol=1e-4 * theirs.abs().max())
        session.prefill(ids, None)
        step_expected, step_got = reference.step(17).float(), session.step(17)  # the cache the prefill left
        torch.testing.assert_close(step_got, step_expected, rtol=0, atol=1e-4 * step_expected.abs().max())


@pytest.mark.parametrize("output_format", [None, "events", "segment", "box", "trace2d"])
def test_onnxruntime_generates_the_same_tokens_as_pytorch(exported, tokenizer, output_format):
    model, folder = exported["fp32"]
    backend = OnnxRuntimeBackend(folder, threads=1)
    vision = vision_input([[4, 4, 6], [4, 4, 6]], seed=3)
    prompt = encode_prompt(tokenizer, "List the start timestamps in s of each jump in the video.",
                           vision.positions_thw.numpy(), 30.0).input_ids
    config = GenerationConfig(max_new_tokens=24, output_format=output_format, max_time_s=12.0)
    expected = generate(TorchSession(model), tokenizer, prompt, TorchBackend(model, tokenizer).vision_tokens(vision), config)
    got = generate(backend.session(), tokenizer, prompt, backend.vision_tokens(vision), config)
    assert got.token_ids == expected.token_ids and len(got.token_ids) > 0
    assert got.stop_reason == expected.stop_reason


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_finishes_a_held_prompt_start_with_its_vision_tokens_as_pytorch_prefills_it(
        exported, tokenizer, precision):
    """The node's prefill ahead: the prompt's start with the older groups' vision tokens, then the
    rest (the newest group's vision tokens and the question) through extend."""
    model, folder = exported["fp32"]
    backend = OnnxRuntimeBackend(folder, threads=1, precision=precision)
    vision = vision_input(GRID, seed=4)
    tokens = TorchBackend(model, tokenizer).vision_tokens(vision)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", vision.positions_thw.numpy(), 30.0).input_ids
    image_pad, vision_end = tokenizer.token_ids().image_pad, tokenizer.token_ids().vision_end
    start = prompt[:[i for i, token in enumerate(prompt) if token == vision_end][1] + 1]  # two runs of blocks
    held = start.count(image_pad)
    assert 0 < held < len(tokens)
    session = PrefixSession(backend.session)
    session.hold(start, tokens[:held])
    got = session.prefill(prompt, tokens)
    assert session.reused == 1 and session.length == len(prompt)
    expected = TorchSession(model).prefill(prompt, tokens)
    assert _relative_error(got, expected) < (1e-4 if precision == "fp32" else 3e-2)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_extends_by_several_tokens_as_pytorch_does_and_forgets_what_it_truncates(
        exported, tokenizer, precision):
    model, folder = exported["fp32"]
    backend = OnnxRuntimeBackend(folder, threads=1, precision=precision)
    vision = vision_input([[4, 4, 6]], seed=2)
    tokens = TorchBackend(model, tokenizer).vision_tokens(vision)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", vision.positions_thw.numpy(), 30.0).input_ids
    reference, session = TorchSession(model), backend.session()
    assert session.can_extend
    reference.prefill(prompt, tokens), session.prefill(prompt, tokens)
    expected, got = reference.extend([17, 40, 5, 99]), session.extend([17, 40, 5, 99])
    assert got.shape == (4, model.config.llm.vocab_size) and session.length == len(prompt) + 4
    tolerance = 1e-4 if precision == "fp32" else 3e-2
    assert _relative_error(got, expected) < tolerance
    reference.truncate(len(prompt) + 2), session.truncate(len(prompt) + 2)  # 5 and 99 were a wrong draft
    expected, got = reference.step(230), session.step(230)
    assert session.length == len(prompt) + 3 and _relative_error(got, expected) < tolerance
    # what follows a token does not depend on the draft after it (int8 checks drafts in fp32)
    first = session.extend([8, 9, 10])[:2]
    session.truncate(len(prompt) + 3)
    torch.testing.assert_close(session.extend([8, 9, 300, 301])[:2], first, rtol=0, atol=1e-5)
    # the rest of a prompt (vision tokens given, here none) runs int8 weights where the backend does
    session.truncate(len(prompt) + 3)
    rest = session.extend([8, 9, 10], tokens[:0])[:2]
    assert _relative_error(rest, first) < tolerance
    if precision == "int8":
        assert not torch.allclose(rest, first, rtol=0, atol=1e-5)
    else:
        torch.testing.assert_close(rest, first, rtol=0, atol=1e-5)


def test_onnxruntime_extend_writes_the_cache_in_place_and_keeps_it_when_the_buffers_grow(exported, tokenizer):
    model, folder = exported["fp32"]
    backend = OnnxRuntimeBackend(folder, threads=1)
    vision = vision_input([[4, 4, 6]], seed=5)
    tokens = TorchBackend(model, tokenizer).vision_tokens(vision)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", vision.positions_thw.numpy(), 30.0).input_ids
    reference, session = TorchSession(model), backend.session()
    reference.prefill(prompt, tokens), session.prefill(prompt, tokens)
    buffers = list(session.buffers)
    logits = session.extend([17, 40, 5])
    kept = logits.clone()
    reference.extend([17, 40, 5])
    # the pass wrote its keys and values into the very arrays bound before it (no copy of the cache)
    assert all(after is before for after, before in zip(session.buffers, buffers))
    for layer in range(model.config.llm.num_layers):
        for held, expected in ((buffers[2 * layer], reference.cache.keys[layer]),
                               (buffers[2 * layer + 1], reference.cache.values[layer])):
            torch.testing.assert_close(torch.from_numpy(held[:, :, :session.length]), expected, rtol=1e-4, atol=1e-4)
    session.extend([8, 9, 10])
    session.truncate(session.length - 3)
    torch.testing.assert_close(logits, kept, rtol=0, atol=0)  # a later pass leaves earlier logits alone
    # past the capacity the buffers grow and keep the past: logits as PyTorch's all the way
    capacity = buffers[0].shape[2]
    generated = [(7 * index) % 300 + 20 for index in range(capacity - session.length + 5)]
    for start in range(0, len(generated), 60):
        chunk = generated[start:start + 60]
        assert _relative_error(session.extend(chunk), reference.extend(chunk)) < 1e-4
    assert session.buffers[0].shape[2] > capacity and session.length == len(prompt) + 3 + len(generated)
    with pytest.raises(ValueError, match="cannot keep"):
        session.truncate(session.length + 1)


def test_the_extend_graph_in_pytorch_attends_as_the_cache_does_and_returns_the_buffers_written(exported, tokenizer):
    """What the export traces (attend_in_buffers' own kernel, on copies of the buffers)."""
    from ov2_ros.runtime.onnx_export import ExtendGraph

    model, _ = exported["fp32"]
    vision = vision_input([[4, 4, 6]], seed=7)
    tokens = TorchBackend(model, tokenizer).vision_tokens(vision)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", vision.positions_thw.numpy(), 30.0).input_ids
    reference = TorchSession(model)
    reference.prefill(prompt, tokens)
    past = reference.length
    buffers = [torch.cat([part, torch.zeros_like(part[:, :, :5])], dim=2)
               for pair in zip(reference.cache.keys, reference.cache.values) for part in pair]
    new = [17, 40, 5]
    with torch.no_grad():
        logits, *written = ExtendGraph(model)(model.language_model.embed_tokens(torch.tensor([new])),
                                              torch.tensor([past]), *buffers)
    expected = reference.extend(new)
    assert _relative_error(logits[0], expected) < 1e-5
    cache = [part for pair in zip(reference.cache.keys, reference.cache.values) for part in pair]
    for before, after, full in zip(buffers, written, cache):
        torch.testing.assert_close(after[:, :, :past + 3], full, rtol=1e-5, atol=1e-5)
        assert not after[:, :, past + 3:].any() and not before[:, :, past:].any()  # the inputs stay as they were


def test_an_extend_graph_of_an_earlier_export_revision_is_not_used(exported, tokenizer, tmp_path):
    import shutil

    from ov2_ros.runtime.onnx_graphs import sha256_file

    _, folder = exported["fp32"]
    copy = tmp_path / "revision5"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "onnx.json").read_text())
    # Before revision 6 the extend graph took the cache as decode does (past.* in, present.* out).
    for graphs, suffix in (("ort_graphs", ".ort.onnx"), ("ort_int8_graphs", ".ort.int8.onnx")):
        shutil.copyfile(copy / "decode.onnx", copy / f"extend{suffix}")
        manifest[graphs]["extend"]["sha256"] = sha256_file(copy / f"extend{suffix}")
    (copy / "onnx.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="export revision 6"):
        backend = OnnxRuntimeBackend(copy, threads=1)
    session = backend.session()
    assert not session.can_extend
    vision = vision_input([[4, 4, 6]], seed=6)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", vision.positions_thw.numpy(), 30.0).input_ids
    config = GenerationConfig(max_new_tokens=12, draft_tokens=8)
    tokens = backend.vision_tokens(vision)
    expected = generate(OnnxRuntimeBackend(folder, threads=1).session(), tokenizer, prompt, tokens, config)
    got = generate(session, tokenizer, prompt, tokens, config)
    assert got.token_ids == expected.token_ids and got.draft_proposed == 0


@pytest.mark.parametrize("output_format", [None, "trace2d"])
def test_onnxruntime_drafted_generation_writes_the_tokens_of_step_by_step_decoding(exported, tokenizer, output_format):
    model, folder = exported["fp32"]
    backend = OnnxRuntimeBackend(folder, threads=1)
    vision = vision_input([[4, 4, 6], [4, 4, 6]], seed=3)
    tokens = backend.vision_tokens(vision)
    prompt = encode_prompt(tokenizer, "Trace the gripper.", vision.positions_thw.numpy(), 30.0).input_ids
    config = GenerationConfig(max_new_tokens=30, output_format=output_format)
    stepwise = generate(backend.session(), tokenizer, prompt, tokens, config)
    other = vision_input([[4, 4, 6], [4, 4, 6]], seed=4)  # another clip's answer as the reference
    reference = generate(backend.session(), tokenizer, prompt, backend.vision_tokens(other), config).token_ids
    drafted = generate(backend.session(), tokenizer, prompt, tokens, dataclasses.replace(config, draft_tokens=8),
                       reference)
    assert drafted.token_ids == stepwise.token_ids and drafted.draft_proposed > 0
    assert drafted.decoder_passes < stepwise.decoder_passes
    unfused = OnnxRuntimeBackend(folder, threads=1, fused_attention=False)  # no extend graph: one at a time
    plain = generate(unfused.session(), tokenizer, prompt, tokens, dataclasses.replace(config, draft_tokens=8), reference)
    assert plain.token_ids == stepwise.token_ids and plain.draft_proposed == 0


def test_an_altered_or_incomplete_onnx_folder_is_refused(exported, tmp_path):
    import shutil

    _, folder = exported["fp32"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with open(copy / "decode.onnx", "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(OnnxFolderError, match="decode.onnx differs"):
        OnnxRuntimeBackend(copy)
    (copy / "decode.onnx").write_bytes((folder / "decode.onnx").read_bytes())
    with open(copy / "weights.data", "ab") as stream:
        stream.write(b"\0")
    with pytest.raises(OnnxFolderError, match="weights.data differs"):
        OnnxRuntimeBackend(copy)
    manifest = json.loads((copy / "onnx.json").read_text())
    manifest["format_version"] = 99
    (copy / "onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(OnnxFolderError, match="format version 99"):
        OnnxRuntimeBackend(copy)
    (copy / "onnx.json").unlink()
    with pytest.raises(MissingInputError, match="ov2 export-onnx"):
        OnnxRuntimeBackend(copy)
    OnnxRuntimeBackend(folder)  # the original is untouched


def test_fp32_exports_carry_int8_weight_variants_of_the_onnx_runtime_graphs(exported):
    _, folder = exported["fp32"]
    manifest = OnnxManifest.load(folder)
    assert sorted(manifest.ort_int8_graphs) == sorted(manifest.ort_graphs)
    for name, entry in manifest.ort_int8_graphs.items():
        graph = onnx.load(str(folder / entry["file"])).graph
        ops = [node.op_type for node in graph.node]
        assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops, name
        per_layer = PREFILL_QUERY_BLOCKS if name == "prefill" else 1
        fused = "GroupQueryAttention" if name == "extend" else "MultiHeadAttention"
        assert ops.count(fused) == 2 * per_layer, name  # attention stays the fused fp32 kernel
        constants = {tensor.name: tensor for tensor in graph.initializer}
        # No product with a weight is left in fp32: every MatMul / Gemm that remains multiplies
        # activations, and the quantised weights are int8.
        assert not any(node.input[1] in constants for node in graph.node if node.op_type in ("MatMul", "Gemm")), name
        int8_weights = [t for t in constants.values() if t.data_type == TensorProto.INT8 and len(t.dims) == 2]
        assert len(int8_weights) >= 2, name
    assert OnnxManifest.load(exported["fp16"][1]).ort_int8_graphs == {}


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.float() - expected.float()).norm() / expected.float().norm())


def test_onnxruntime_int8_stays_within_a_few_percent_of_pytorch(exported, tokenizer):
    """int8 weights move the numbers by about a percent, not the answer's first token."""
    model, folder = exported["fp32"]
    int8 = OnnxRuntimeBackend(folder, threads=1, precision="int8")
    vision = vision_input(GRID)
    reference = TorchBackend(model, tokenizer)
    expected_tokens = reference.vision_tokens(vision)
    tokens = int8.vision_tokens(vision)
    assert tokens.shape == expected_tokens.shape
    vision_error = _relative_error(tokens, expected_tokens)
    prompt = encode_prompt(tokenizer, "When does the gripper grasp the cube?", vision.positions_thw.numpy(), 30.0)
    torch_session, session = TorchSession(model), int8.session()
    pairs = [(torch_session.prefill(prompt.input_ids, expected_tokens),
              session.prefill(prompt.input_ids, expected_tokens))]
    for token in [17, 40, 5]:
        pairs.append((torch_session.step(token), session.step(token)))
    logit_errors = [_relative_error(got, want) for want, got in pairs]
    assert 0 < vision_error < 0.03 and 0 < max(logit_errors) < 0.03, (vision_error, logit_errors)
    assert all(int(got.argmax()) == int(want.argmax()) for want, got in pairs)


def test_int8_is_refused_where_an_export_has_no_int8_graphs(exported):
    with pytest.raises(OnnxFolderError, match="has no int8 graphs .fp16 export"):
        OnnxRuntimeBackend(exported["fp16"][1], precision="int8")
    with pytest.raises(OnnxFolderError, match="for unfused attention"):
        OnnxRuntimeBackend(exported["fp32"][1], precision="int8", fused_attention=False)
    with pytest.raises(ValueError, match="precision 'int4'"):
        OnnxRuntimeBackend(exported["fp32"][1], precision="int4")
    with pytest.raises(ValueError, match="the torch backend runs in fp32, fp16, bf16, not 'int8'"):
        open_backend("torch", dtype="int8")
