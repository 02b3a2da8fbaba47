"""`ov2 train` and `ov2 eval`: training's subcommands, registered through setup.py's
"ov2.commands" entry points."""
from __future__ import annotations


def add_train(commands) -> None:
    from training import train

    parser = commands.add_parser("train", help="train one stage (training/configs/); see python -m training.pipeline")
    train.add_arguments(parser)
    parser.set_defaults(handler=train.run)


def add_eval(commands) -> None:
    from training import evaluate

    parser = commands.add_parser("eval", help="evaluate a model on held-out synthetic worlds")
    evaluate.add_arguments(parser)
    parser.set_defaults(handler=evaluate.run)
