"""A short seeded fuzz run: mutated access units never escape ingest or the tokenizer, every
message is accounted for, and groups keep their positions inside their frames and grid."""
from ov2_ros.tokenizer.fuzz import MUTATIONS, run_fuzz


def test_mutated_access_units_break_nothing():
    document = run_fuzz(count=1500, seed=3, max_seconds=300, mutation_rate=0.3)
    assert document["failure_count"] == 0, document["failures"][:3]
    assert document["access_units"] == 1500 == sum(document["outcomes"].values())
    assert set(document["mutations"]) >= set(MUTATIONS) - {"stamp_back"} | {"none"}  # most kinds were tried
    outcomes = document["outcomes"]
    assert outcomes["accepted"] > 300 and outcomes["rejected_malformed"] > 0 and outcomes["dropped_waiting_for_idr"] > 0
    assert document["frames_decoded"] > 300 and document["groups"] > 5  # it recovered, again and again
