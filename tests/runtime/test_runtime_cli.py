"""`ov2 export-onnx` then `ov2 generate --backend onnxruntime`: the same answer as PyTorch."""
import json

from ov2_ros.cli import main


def test_export_then_generate_with_onnxruntime_answers_as_torch(model_dir, p_stream, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export-onnx", "--model", str(model_dir), "--out", str(out)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["dtype"] == "fp32" and sorted(exported["graphs"]) == ["decode", "embed", "prefill", "vision"]
    answers = {}
    for backend, folder in (("torch", model_dir), ("onnxruntime", out)):
        for question in ("Where is the red cube? Give its bounding box.", "When does the gripper grasp the cube?"):
            assert main(["generate", str(p_stream.mp4_path), "--backend", backend, "--model", str(folder),
                         "--prompt", question, "--budget", "4"]) == 0
            answers[backend, question] = json.loads(capsys.readouterr().out)
    for question in ("Where is the red cube? Give its bounding box.", "When does the gripper grasp the cube?"):
        torch_answer, ort_answer = answers["torch", question], answers["onnxruntime", question]
        assert ort_answer["text"] == torch_answer["text"] and ort_answer["parsed"] == torch_answer["parsed"]
        assert ort_answer["vision_tokens"] == torch_answer["vision_tokens"] > 0


def test_onnxruntime_without_a_folder_exports_the_default_model_once(p_stream, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OV2_CACHE", str(tmp_path / "cache"))
    question = ["generate", str(p_stream.mp4_path), "--prompt", "Where is the red cube? Give its bounding box.",
                "--budget", "4"]
    assert main(question) == 0
    expected = json.loads(capsys.readouterr().out)
    assert main([*question, "--backend", "onnxruntime"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["text"] == expected["text"] and got["parsed"] == expected["parsed"]
    (exported,) = (tmp_path / "cache" / "onnx").glob("default-*-fp32")
    manifest = exported / "onnx.json"
    written = manifest.stat().st_mtime_ns
    assert main([*question, "--backend", "onnxruntime"]) == 0  # reused, not exported again
    assert json.loads(capsys.readouterr().out)["text"] == expected["text"]
    assert manifest.stat().st_mtime_ns == written
    assert not list((tmp_path / "cache" / "onnx").glob("*.exporting-*"))


def test_onnxruntime_with_a_model_folder_says_what_to_do(model_dir, p_stream, capsys):
    assert main(["generate", str(p_stream.mp4_path), "--backend", "onnxruntime", "--model", str(model_dir),
                 "--prompt", "x"]) == 2
    assert "not an exported ONNX folder" in capsys.readouterr().err
