"""Training and evaluating ov2_ros models on synthetic worlds with exact ground truth.
Sits on top of the package: imports ov2_ros, never the reverse."""
