"""ov2_ros: codec-native video perception for robots (the LLaVA-OneVision-2 method).

Layers, imported in one direction: codec -> tokenizer -> model -> runtime -> ros. Everything
below `ros` runs without ROS.
"""
import sys
from pathlib import Path

__version__ = "0.1.0"


def _find_generated_interfaces() -> None:
    """Make rosidl's generated `ov2_ros.msg` / `ov2_ros.srv` importable as subpackages.

    colcon installs them into the same folder as these sources, so nothing is needed there. The
    virtual-environment set-up (tools/setup.sh) keeps the sources editable and installs the
    generated code into <prefix>/lib/ov2_ros_interfaces/ov2_ros, which we add to this package's
    search path (never to sys.path, where it would shadow these sources).
    """
    generated = Path(sys.prefix) / "lib" / "ov2_ros_interfaces" / "ov2_ros"
    if generated.is_dir() and str(generated) not in __path__:
        __path__.append(str(generated))


_find_generated_interfaces()
