"""The command line of `python -m trainer.task`: every training option, its default and the checks that turn
an option that cannot work into one usage line (exit status 2) before any data is read."""

import argparse
import os
import sys

from model import console

from model.network import (BACKBONE_CHOICES, BACKBONE_NONE, BACKBONES, DEFAULT_BLOCK_FILTERS, DEFAULT_DROPOUT,
                           IMAGENET)
from trainer import data as datasets
from trainer import distill, expressions


def recipe(args: argparse.Namespace) -> dict:
    """The recipe options as a model's `training_config` records them (what a refit must give again): option
    name with underscores -> value; low resolution, other weight and teacher weight only when they apply."""
    return {
        "batch_size": args.batch_size, "learning_rate": args.learning_rate, "label_smoothing": args.label_smoothing,
        "dropout": args.dropout, "block_filters": list(args.block_filters), "augment": not args.no_augment,
        "mixup": args.mixup,
        **({"ema_momentum": args.ema_momentum} if args.ema_momentum else {}),
        **({"low_resolution": args.low_resolution} if args.low_resolution else {}),
        **({"other_weight": args.other_weight} if args.extra_data_dir else {}),
        **({"finetune_epochs": args.finetune_epochs} if args.finetune_epochs else {}),
        **({"teacher_weight": args.teacher_weight} if args.teacher else {}),
        "mirror_average": not args.no_mirror_average,
        **({"align_crops": True} if args.align_crops else {}),
        "backbone": args.backbone,
        "backbone_weights": (os.path.basename(args.backbone_weights) if args.backbone_weights
                             and args.backbone_weights != IMAGENET else args.backbone_weights),
        "backbone_input_size": (args.backbone_input_size or BACKBONES[args.backbone].input_size
                                if args.backbone != BACKBONE_NONE else None),
    }


def check_refit(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> None:
    """--refit-of takes its epochs and split from the run it refits: refuse those options given too (even at
    their defaults), a budget, a folder that is not local, and the run's own folder as the output (it would be
    replaced)."""
    if not args.refit_of or "://" in args.refit_of:
        parser.error(f"--refit-of needs a local model folder or its facelabel.json, got {args.refit_of!r}")
    given = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    taken = []
    for flag in ("--epochs", "--patience", "--validation-fraction", "--test-fraction", "--split-seed",
                 "--max-images-per-class", "--max-minutes"):
        dest = flag[2:].replace("-", "_")
        if flag in given or getattr(args, dest) != parser.get_default(dest):
            taken.append(flag)
    if taken:
        parser.error(f"--refit-of takes its epochs and split from the run it refits: drop {', '.join(taken)}")
    source = os.path.dirname(args.refit_of) if os.path.isfile(args.refit_of) else args.refit_of
    if os.path.realpath(args.output_dir) == os.path.realpath(source):
        parser.error("--output-dir is the --refit-of model's folder: it would be replaced; choose another")


def parse_args(argv: list[str] | None, description: str = "Train the happy/sad network.") -> argparse.Namespace:
    """The parsed options, block filters as a tuple of ints; argparse exits with status 2 on a usage error."""
    parser = console.OneLineParser(prog="python -m trainer.task", description=description)
    parser.add_argument("--data-dir", required=True,
                        help="folder with one sub-folder of images per class, local or gs://")
    parser.add_argument("--output-dir", required=True,
                        help="where the SavedModel and facelabel.json go, local or gs://")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs (early stopping may end sooner)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate (AdamW)")
    parser.add_argument("--max-minutes", type=float, default=0,
                        help="time budget for the whole run (0 = none): after the first epoch the learning-rate "
                             "schedule is shortened to the epochs that fit, and training stops before overrunning")
    parser.add_argument("--patience", type=int, default=15, help="epochs without validation AUC gain before stopping")
    parser.add_argument("--label-smoothing", type=float, default=0.05)
    parser.add_argument("--dropout", type=float, default=DEFAULT_DROPOUT)
    parser.add_argument("--block-filters", default=",".join(map(str, DEFAULT_BLOCK_FILTERS)),
                        help="comma-separated filters per conv block, e.g. 32,64,128,256 (backbone none only)")
    parser.add_argument("--backbone", choices=BACKBONE_CHOICES, default=BACKBONE_NONE,
                        help="feature extractor: none = the from-scratch CNN; otherwise an ImageNet network adapted "
                             "to 48x48 greyscale faces inside the model")
    parser.add_argument("--backbone-weights", default=None, metavar="imagenet|FILE",
                        help="start the backbone from these weights: 'imagenet' (downloaded by Keras, or found in "
                             "~/.keras/models) or a local weights file of the backbone without its top "
                             "(default: random initialisation)")
    parser.add_argument("--backbone-input-size", type=int, default=0,
                        help="side the face is resized to for the backbone (0 = the backbone's default: "
                             + ", ".join(f"{name} {spec.input_size}" for name, spec in BACKBONES.items()) + ")")
    parser.add_argument("--no-augment", action="store_true", help="train without data augmentation")
    parser.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA",
                        help="mixup: blend each training face and its label with another's, weight ~ Beta(ALPHA, "
                             "ALPHA) (0 = off; 0.2 is the usual value)")
    parser.add_argument("--ema-momentum", type=float, default=0.0, metavar="M",
                        help="train with an exponential moving average of the weights (Polyak averaging), updated "
                             "every step with momentum M, and validate and serve the averaged weights (0 = off; "
                             "0.999 averages about the last 1,000 steps)")
    parser.add_argument("--no-mirror-average", action="store_true",
                        help="serve the plain network instead of averaging each face with its mirror image")
    parser.add_argument("--extra-data-dir", default=None,
                        help="folder with one sub-folder per other expression (e.g. fer2013/train-other): its faces "
                             "train the network as auxiliary classes; only happy/sad is served (trainer/expressions.py)")
    parser.add_argument("--other-weight", type=float, default=expressions.DEFAULT_OTHER_WEIGHT,
                        help="loss weight of each face of another expression (happy and sad faces average 1; "
                             "default %(default)s)")
    parser.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                        help="with --extra-data-dir: after training on all expressions (pre-training), fine-tune "
                             "on happy/sad faces alone for N epochs at a tenth of the learning rate, keeping the "
                             "epoch with the best validation AUC, or none (0 = off)")
    parser.add_argument("--low-resolution", type=float, default=0.0, metavar="P",
                        help="probability that a training face is shrunk to 16-36 px and enlarged back, as small "
                             "faces in photos are (0 = off)")
    parser.add_argument("--align-crops", action="store_true",
                        help="train on each crop's face found and aligned as in photos (model/align.py), and serve "
                             "face-sized images that way too (a crop without a face found stays whole)")
    parser.add_argument("--teacher", action="append", default=[], metavar="MODEL_DIR",
                        help="distil: blend each happy/sad face's target with this exported model's answer (repeat "
                             "for several teachers, averaged); trainer/distill.py")
    parser.add_argument("--teacher-weight", type=float, default=distill.DEFAULT_TEACHER_WEIGHT,
                        help="share of each target taken from the teachers (default %(default)s)")
    parser.add_argument("--validation-fraction", type=float, default=datasets.DEFAULT_VALIDATION_FRACTION,
                        help="fraction of each class's faces held out for choices (default %(default)s; with "
                             "--test-fraction, of the faces left after the test split)")
    parser.add_argument("--test-fraction", type=float, default=0.0,
                        help="carve this fraction of the faces as a test split first, on which nothing is chosen "
                             "(0 = none); at 0.15 with the default seed it is the validation split of models "
                             "trained without one")
    parser.add_argument("--split-seed", type=int, default=datasets.DEFAULT_SPLIT_SEED)
    parser.add_argument("--refit-of", default=None, metavar="MODEL",
                        help="refit: train on this earlier run's (its folder or its facelabel.json) training and "
                             "validation faces together, to the "
                             "epoch whose weights it serves on its learning-rate schedule, keeping its split "
                             "settings, temperature and threshold (the same recipe options must be given again); "
                             "trainer/refit.py")
    parser.add_argument("--seed", type=int, default=1, help="seed for weights, shuffling and augmentation")
    parser.add_argument("--max-images-per-class", type=int, default=0,
                        help="use at most this many images per class (0 = all); for quick smoke runs")
    args = parser.parse_args(argv)
    try:
        args.block_filters = tuple(int(f) for f in args.block_filters.split(","))
    except ValueError:
        parser.error(f"--block-filters must be comma-separated integers, got {args.block_filters!r}")
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.patience < 0:
        parser.error("--patience must be 0 (stop at the first epoch without a gain) or more")
    if args.max_images_per_class < 0:
        parser.error("--max-images-per-class must be 0 (all) or more")
    if args.mixup < 0:
        parser.error("--mixup must be positive (or 0 for off)")
    if not 0.0 <= args.ema_momentum < 1.0:
        parser.error("--ema-momentum must be 0 (off) or more, and below 1")
    if args.ema_momentum and args.finetune_epochs:
        parser.error("--ema-momentum averages the weights of one training, and --finetune-epochs adds a second "
                     "that does not average them: use one or the other")
    if args.max_minutes < 0:
        parser.error("--max-minutes must be positive (or 0 for no budget)")
    if not 0.0 < args.validation_fraction < 1.0:
        parser.error("--validation-fraction must be between 0 and 1")
    if not 0.0 <= args.test_fraction < 1.0 or args.test_fraction + args.validation_fraction >= 1.0:
        parser.error("--test-fraction must be 0 or more, and with --validation-fraction below 1")
    if not 0.0 <= args.low_resolution <= 1.0:
        parser.error("--low-resolution must be a probability between 0 and 1")
    if args.other_weight < 0:
        parser.error("--other-weight must be 0 or more")
    if args.finetune_epochs < 0:
        parser.error("--finetune-epochs must be 0 (off) or more")
    if args.finetune_epochs and not args.extra_data_dir:
        parser.error("--finetune-epochs fine-tunes after pre-training on --extra-data-dir's expressions: give "
                     "that folder too")
    if args.finetune_epochs and args.max_minutes:
        parser.error("--max-minutes budgets the pre-training only: it cannot be combined with --finetune-epochs")
    if args.low_resolution and args.no_augment:
        parser.error("--low-resolution is an augmentation: it cannot be used with --no-augment")
    if args.other_weight != expressions.DEFAULT_OTHER_WEIGHT and not args.extra_data_dir:
        parser.error("--other-weight weighs the faces of --extra-data-dir: give that folder too")
    if not 0.0 < args.teacher_weight <= 1.0:
        parser.error("--teacher-weight must be above 0 and at most 1")
    if args.teacher_weight != distill.DEFAULT_TEACHER_WEIGHT and not args.teacher:
        parser.error("--teacher-weight weighs the answers of --teacher: give a teacher too")
    if args.teacher and args.mixup:
        parser.error("--teacher and --mixup cannot be combined (mixup blends the targets the teachers give)")
    if args.refit_of is not None:
        check_refit(parser, args, sys.argv[1:] if argv is None else list(argv))
    if args.extra_data_dir and args.backbone != BACKBONE_NONE:
        parser.error("--extra-data-dir works with the from-scratch CNN only (--backbone none)")
    if args.backbone == BACKBONE_NONE and (args.backbone_weights or args.backbone_input_size):
        parser.error("--backbone-weights and --backbone-input-size need a --backbone")
    if args.backbone_input_size and args.backbone_input_size < BACKBONES[args.backbone].min_input_size:
        parser.error(f"--backbone-input-size must be at least {BACKBONES[args.backbone].min_input_size} "
                     f"for {args.backbone}")
    return args
