"""Offline install of ov2_ros: `pip install -e .` gives the library and the `ov2` command without
ROS. On a ROS 2 machine, colcon builds the same folder as an ament_cmake package (CMakeLists.txt),
which adds the generated interfaces (ov2_ros.msg, ov2_ros.srv) and the `ros2 run` executables."""
from setuptools import find_packages, setup

setup(
    name="ov2_ros",
    version="0.1.0",
    description="Codec-native video perception for ROS 2 (LLaVA-OneVision-2 method)",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ov2_ros", "ov2_ros.*", "training", "training.*", "trt_build", "trt_build.*"]),
    package_data={"ov2_ros.model": ["default_model/*"], "ov2_ros.runtime": ["data/*.json"],
                  "training": ["configs/*.json"], "trt_build": ["profiles.json"]},
    install_requires=[
        "numpy>=1.24",
        "av>=14",
        "opencv-python-headless>=4.8",
        "tqdm>=4.60",
        "PyYAML>=6",
        "safetensors>=0.4",
        "tokenizers>=0.19",
        "regex>=2023",
        # torch is deliberately absent: install the build for your machine first (CPU wheel,
        # CUDA, or JetPack's); requirements.txt pins the CPU one for development and CI.
    ],
    entry_points={
        "console_scripts": [
            "ov2 = ov2_ros.cli:main",
            "ov2_node = ov2_ros.ros.node:main",
        ],
        # training/ and trt_build/ sit on top of ov2_ros and add their subcommands to `ov2` from here.
        "ov2.commands": [
            "train = training.commands:add_train",
            "eval = training.commands:add_eval",
            "build-engines = trt_build.commands:add_build_engines",
            "inspect-engine = trt_build.commands:add_inspect_engine",
        ],
    },
)
