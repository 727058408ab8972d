"""``python -m repro``: one training run, one evaluation or one download by hand."""
from __future__ import annotations

import argparse
import json
import signal
import sys

import yaml

from repro import registry
from repro.config import LAYERS, RunSpec, Settings, load_config, validate_config
from repro.errors import UserError
from repro.grid import AUDITS


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """``key.sub=value`` pairs (values parsed as YAML) applied onto a config dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE, e.g. training.max_epochs=2")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return config


def _config(args) -> dict:
    """The merged config (file, presets, ``--set``), checked as the workflow checks it."""
    return validate_config(apply_overrides(load_config(args.config, *args.configfile), args.set))


def _use_threads(args, config: dict, stage: str | None = None) -> None:
    """torch's threads: ``--threads``, else the config's ``resources.<stage>.threads``, the
    count a workflow job of the same stage runs with (unless --cores is lower): results on
    CPU depend on the thread count, so a run by hand repeats the workflow's numbers."""
    import torch

    torch.set_num_threads(args.threads if args.threads is not None
                          else config["resources"][stage or args.command]["threads"])


def _run(args) -> RunSpec:
    """The run the flags name; checked once the config's plugins are loaded, since a plugin's
    defense is known only then."""
    try:
        return RunSpec(args.dataset, args.defense, args.seed, args.layer, args.beta)
    except ValueError as error:
        raise UserError(f"--defense/--layer/--beta: {error}") from error


def run_arguments(run: RunSpec) -> list[str]:
    """The command-line flags that name ``run`` (what ``_run`` reads back)."""
    flags = ["--dataset", run.dataset, "--defense", run.defense, "--seed", str(run.seed)]
    if run.layer is not None:
        flags += ["--layer", run.layer, "--beta", repr(run.beta)]
    return flags


def _common(parser, with_run=True):
    parser.add_argument("--config", default="config.yaml",
                        help="pipeline config to read (default: config.yaml)")
    parser.add_argument("--configfile", action="append", default=[], metavar="PRESET",
                        help="preset merged over --config, as in Snakemake, e.g. "
                             "config/smoke.yaml (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_epochs=2 "
                             "(repeatable)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N (default: runtime.device from the config)")
    if with_run:
        parser.add_argument("--threads", type=int, default=None,
                            help="torch threads (default: resources.<command>.threads from the "
                                 "config, as in the workflow; results on CPU depend on it)")
        parser.add_argument("--dataset", required=True,
                            help="cifar10, mnist or one of the config's plugins:")
        parser.add_argument("--defense", required=True,
                            help="a defense id: the paper's (standard, at-pgd, cl-fgsm, ...) "
                                 "or one of the config's plugins:")
        parser.add_argument("--layer", choices=LAYERS, default=None,
                            help="embedding of the contrastive loss (cl-* only)")
        parser.add_argument("--beta", type=float, default=None,
                            help="weight of the contrastive loss (cl-* only)")
        parser.add_argument("--seed", type=int, default=0, help="run seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train one run and write its checkpoint")
    _common(train)
    train.add_argument("--out", required=True, help="checkpoint path (metrics.csv goes beside)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="accuracy of a checkpoint under an attack")
    _common(evaluate)
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint written by train")
    evaluate.add_argument("--attack", required=True,
                          help="an attack id: clean, fgsm, pgd, deepfool or one of the "
                               "config's plugins:")
    evaluate.add_argument("--out", default=None, help="JSON path (default: print only)")

    audit = commands.add_parser("audit", help="an audit evaluation of a checkpoint (Table A, "
                                              "the ε curve)")
    _common(audit)
    audit.add_argument("--checkpoint", required=True, help="checkpoint written by train")
    audit.add_argument("--kind", required=True, choices=AUDITS,
                       help="autoattack: Table A's numbers; epsilon: the ε curve")
    audit.add_argument("--out", default=None, help="JSON path (default: print only)")

    download = commands.add_parser("download", help="fetch a dataset into data.root")
    _common(download, with_run=False)
    download.add_argument("dataset", help="cifar10, mnist or one of the config's plugins:")

    estimate = commands.add_parser("estimate", help="jobs and GPU-hours the config implies")
    _common(estimate, with_run=False)
    estimate.add_argument("--images-per-second", nargs="+", metavar="[DEFENSE=]N",
                          help="training throughput: one number for all defenses, or "
                               "DEFENSE=N pairs (benchmarks/train.py prints them; default: "
                               "the rates measured on this kind of device)")
    estimate.add_argument("--attack-images-per-second", nargs="+", metavar="ATTACK=N",
                          help="evaluation attack throughput, e.g. pgd=8000 deepfool=1500 "
                               "(benchmarks/attacks.py prints them; default: measured on this "
                               "kind of device)")
    estimate.add_argument("--peak-tflops", type=float,
                          help="the card's dense peak (e.g. H100 SXM: 494.7 for fp32 as TF32, "
                               "989.4 for bf16): adds the FLOP floor of every row")
    estimate.add_argument("--epochs", type=int, default=20,
                          help="epochs per run before early stopping (default 20)")
    estimate.add_argument("--deepfool-steps", type=float, default=3,
                          help="DeepFool steps typically taken per sample (default 3)")
    estimate.add_argument("--robust-fraction", type=float, default=0.5,
                          help="share of the audit's images that survive APGD-CE, so that "
                               "APGD-T, FAB-T and Square attack them (default 0.5)")
    calibrate = commands.add_parser(
        "calibrate", help="measure this machine's rates (about two minutes) for estimate and "
                          "the workflow's cost notice")
    _common(calibrate, with_run=False)
    calibrate.add_argument("--out", default=None,
                           help="rates file (default: $REPRO_RATES, else "
                                "~/.cache/repro/rates.yaml, where estimate looks)")
    calibrate.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                           help="seconds of timing, shared out over the defenses and attacks "
                                "(default 90; the CUDA checks come on top)")
    calibrate.add_argument("--no-checks", action="store_true",
                           help="skip the CUDA correctness checks (benchmarks/gpu.sh runs them "
                                "in a stage of their own)")
    calibrate.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # SLURM and pre-emption send SIGTERM: exit non-zero at once; the resumable state of the
    # last completed epoch is already on disk.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return _main(args)
    except UserError as error:
        raise SystemExit(f"python -m repro {args.command}: {error}") from error


def _check_writable(args, settings: Settings) -> None:
    """Fail before any work when this command cannot write where it will (a read-only folder,
    another user's), instead of after an epoch of training."""
    if args.command == "estimate":
        return
    from repro.runtime import io

    if args.command == "download":
        from repro import data

        torchvision = settings.data.source(args.dataset).get("source") == "torchvision"
        paths = [data.lock_file(settings, args.dataset)] if torchvision else []
    else:
        paths = [args.out] if args.out else []
    for path in paths:
        io.check_writable(path)


def _main(args) -> int:
    if args.command == "evaluate" and args.attack in AUDITS:
        raise UserError(f"--attack {args.attack} is an audit kind, not an attack; run "
                        f"python -m repro audit --kind {args.attack} (same other flags)")
    config = _config(args)
    settings = Settings.from_config(config)
    checks = [(flag, flag) for flag in ("dataset", "attack") if hasattr(args, flag)]
    for flag, kind in checks:
        try:
            registry.get(kind, getattr(args, flag))
        except ValueError as error:
            raise UserError(f"--{flag}: {error}") from error
    _check_writable(args, settings)
    if args.command == "train":
        from repro.runs.train import train_run

        _use_threads(args, config)
        result = train_run(settings, _run(args), args.out, args.device,
                           progress=False if args.no_progress else None)
        last = result["metrics"][-1]
        print(f"{args.out}: {result['epochs']} epochs, best val loss "
              f"{result['best_val_loss']:.4f}, last val acc {last['val_acc']:.2f}%")
    elif args.command == "audit":
        from repro.runs.audit import evaluate_audit

        _use_threads(args, config)
        result = evaluate_audit(settings, _run(args), args.checkpoint, args.kind, args.out,
                                args.device)
        print(json.dumps({k: v for k, v in result.items() if k.endswith("top1")
                          or k in ("attack", "n", "top1_by_epsilon", "fooled_first_by")}))
    elif args.command == "evaluate":
        from repro.runs.evaluate import evaluate_run

        _use_threads(args, config)
        result = evaluate_run(settings, _run(args), args.checkpoint, args.attack, args.out,
                              args.device)
        print(json.dumps({k: result[k] for k in ("attack", "top1", "top3", "top5", "n")}))
    elif args.command == "estimate":
        from repro.cost.estimate import (estimate, floor_rates, format_estimate, measured_rates,
                                         parse_rates)

        kind, name, entry = measured_rates(args.device or settings.runtime.device)
        defaults = [part for part, flag in (("training", args.images_per_second),
                                            ("attack", args.attack_images_per_second))
                    if not flag]
        if defaults and entry.get("calibrated"):
            print(f"{' and '.join(defaults)} rates {entry['source']}\n")
        elif defaults:
            device = "" if kind in name else f"; this device: {name}"
            print(f"{' and '.join(defaults)} rates measured on {kind} ({entry['source']}; "
                  f"python -m repro calibrate measures this machine's){device}\n")
        measured = estimate(
            config, parse_rates(args.images_per_second) if args.images_per_second
            else entry["train"], args.epochs, args.deepfool_steps,
            parse_rates(args.attack_images_per_second) if args.attack_images_per_second
            else entry["attack"], robust_fraction=args.robust_fraction)
        floor = args.peak_tflops and estimate(
            config, floor_rates(config, args.peak_tflops), args.epochs, args.deepfool_steps,
            robust_fraction=args.robust_fraction)
        print(format_estimate(measured, floor or None))
    elif args.command == "calibrate":
        from repro.cost import calibrate, measured

        rates = calibrate.calibrate(config, args.device, args.budget or calibrate.BUDGET_S,
                                    progress=not args.no_progress, checks=not args.no_checks)
        print(calibrate.format_rates(rates))
        path = calibrate.write_rates(rates, args.out)
        if path.resolve() == measured.rates_path().resolve():
            print(f"written to {path}: python -m repro estimate and the workflow's cost notice "
                  f"price {rates['device_name']} with these from now on")
        else:
            print(f"written to {path}; estimate and the cost notice read it with "
                  f"{measured.RATES_ENV}={path} set")
        if any(not result.startswith("ok") for result in rates.get("checks", {}).values()):
            raise UserError("a CUDA check failed (see above): run with runtime.cuda_graphs: "
                            "off, and report the lines above")
    else:
        from repro.data import prepare

        print(json.dumps(prepare(settings, args.dataset)))
    return 0
