"""The package's layers import in one direction (codec -> tokenizer -> model -> runtime -> ros),
and nothing outside ros/ imports rclpy or the generated interfaces, so everything below ros/
runs without ROS."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ov2_ros"
ORDER = ["codec", "synth", "tokenizer", "model", "runtime", "ros"]
ROS_MODULES = ("rclpy", "sensor_msgs", "diagnostic_msgs", "std_msgs", "builtin_interfaces",
               "rcl_interfaces", "visualization_msgs", "ov2_ros.msg", "ov2_ros.srv")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers_import_downwards_only():
    problems = []
    for layer_index, layer in enumerate(ORDER):
        folder = PACKAGE / layer
        if not folder.is_dir():
            continue
        higher = ORDER[layer_index + 1:]
        for path in folder.rglob("*.py"):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] == "ov2_ros" and len(parts) > 1 and parts[1] in higher:
                    problems.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not problems, problems


def test_the_package_never_imports_what_sits_on_top_of_it():
    # training/ and trt_build/ import ov2_ros; ov2_ros reaches them only through entry points.
    problems = [f"{path.relative_to(PACKAGE)} imports {name}" for path in PACKAGE.rglob("*.py")
                for name in _imports(path) if name.split(".")[0] in ("training", "trt_build")]
    assert not problems, problems


def test_only_ros_layer_and_cli_veneer_touch_ros():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "ros":
            continue
        for name in _imports(path):
            if name.startswith(ROS_MODULES):
                problems.append(f"{relative} imports {name}")
    assert not problems, problems


def test_offline_library_imports_without_ros(tmp_path):
    """Import every module below ros/ in a fresh interpreter where rclpy cannot be imported."""
    import subprocess
    import sys

    blocker = tmp_path / "rclpy"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('ROS is not installed here')\n")
    modules = sorted(
        ".".join(("ov2_ros",) + path.relative_to(PACKAGE).with_suffix("").parts)
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] != "ros" and path.name != "__init__.py")
    code = "import importlib\nfor m in %r: importlib.import_module(m)\nimport ov2_ros.cli as c; c.build_parser()\n" % modules
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
