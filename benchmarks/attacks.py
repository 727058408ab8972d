"""Speed of repro's FGSM, PGD-20 and DeepFool against torchattacks and foolbox, and against
their compute floors, on one model and one batch, in one run.

    python benchmarks/attacks.py --device cpu --batch 128

The model is the pipeline's ResNet-18 (random init, briefly trained on seeded class prototypes
so that attacks have correct predictions to break), attacked on [0, 1] pixels, the only space
the reference libraries share with us. Every attack sees the same inputs; timings are medians
of repeats taken round-robin, so a noisy machine slows all contenders alike. Ratios:

- ``vs ref``: reference time / repro time (>1: repro is faster);
- ``vs floor``: repro time / floor, where the floor is the unavoidable model work: PGD-20 =
  20 × (forward + input backward); DeepFool = for each step actually taken, forward + one input
  backward per class on the samples still active (measured at those batch sizes);
- ``vs bound``: repro time / the same work done at ``--bound-batch`` (4096 on CUDA) and scaled
  to the images attacked: the practical bound where kernel launches are amortized.

On CUDA, DeepFool is also timed the other way its shape problem can be solved (no padding of
the active set, cuDNN autotuning off), to keep the faster one. The line before the summary
is ``repro estimate``'s ``--attack-images-per-second``: the images/s of each attack as the
pipeline runs it (DeepFool with the config's default, overshoot per step).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from repro import attacks  # noqa: E402
from repro.config import NUM_CLASSES  # noqa: E402
from repro.cost.timing import prototypes, synchronize, trained_model  # noqa: E402
from repro.runtime.device import select_device  # noqa: E402

EPS, ALPHA, PGD_STEPS, DF_STEPS, OVERSHOOT = 8 / 255, 2 / 255, 20, 20, 0.02


def time_round_robin(jobs: dict, repeats: int, device) -> dict:
    """Median seconds of each job; repeats alternate between jobs so noise hits all alike."""
    times = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            synchronize(device)
            started = time.perf_counter()
            job()
            synchronize(device)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def forward_backward(model, inputs, labels, classes: int = 0):
    """One forward pass and input-gradient backward passes: one of the CE (``classes=0``),
    or one per logit (the DeepFool floor), with frozen parameters as in any attack."""
    with attacks.attacking(model):
        x = inputs.detach().requires_grad_(True)
        logits = model(x)
        if classes == 0:
            torch.autograd.grad(F.cross_entropy(logits, labels), x)
        for k in range(classes):
            torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k + 1 < classes)


def success_mask(model, adv, labels) -> torch.Tensor:
    with torch.no_grad():
        return model(adv).argmax(1) != labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=28, help="input height = width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bound-batch", type=int, default=0,
                        help="batch of the large-batch bound (0: 4096 on CUDA, --batch on CPU)")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--slice", type=int, default=16,
                        help="torchattacks' DeepFool loops over samples: time it on this many "
                             "and scale to the batch (0: the whole batch)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); on a shared machine 1 "
                             "avoids OpenMP threads spinning against other jobs")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)  # the pipeline's cudnn.benchmark and TF32
    model = trained_model(args.size, args.train_steps, device)
    x, y = prototypes(args.batch, args.size, seed=1, device=device)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    print(f"ResNet-18, {args.size}x{args.size}, batch {args.batch}, {device}, "
          f"{torch.get_num_threads()} threads, clean accuracy {clean:.0%}, "
          f"median of {args.repeats}\n")

    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    try:
        import foolbox
    except ImportError:
        foolbox = None

    rows, checks = [], []

    # --- FGSM and PGD-20 --------------------------------------------------------------
    ours = {"fgsm": lambda: attacks.fgsm(model, x, y, EPS, clip=(0.0, 1.0)),
            "pgd": lambda: attacks.pgd(model, x, y, EPS, ALPHA, PGD_STEPS, clip=(0.0, 1.0))}
    bound_batch = args.bound_batch or (4096 if device.type == "cuda" else args.batch)
    xb, yb = prototypes(bound_batch, args.size, seed=2, device=device)
    jobs = dict(ours, unit=lambda: forward_backward(model, x, y),
                bound=lambda: forward_backward(model, xb, yb),
                bound_classes=lambda: forward_backward(model, xb, yb, NUM_CLASSES))
    if torchattacks is not None:
        jobs["ta-fgsm"] = lambda: torchattacks.FGSM(model, eps=EPS)(x, y)
        jobs["ta-pgd"] = lambda: torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=PGD_STEPS,
                                                  random_start=False)(x, y)
    times = time_round_robin(jobs, args.repeats, device)
    per_image = {1: times["bound"] / bound_batch,  # fwd + input bwd at the large batch
                 NUM_CLASSES: times["bound_classes"] / bound_batch}  # ... one per class
    for name, steps in (("fgsm", 1), ("pgd", PGD_STEPS)):
        ref = f"ta-{name}"
        rows.append((name.upper() + ("-20" if steps > 1 else ""), times[name],
                     "torchattacks" if ref in times else "-", times.get(ref),
                     steps * times["unit"], steps * per_image[1] * args.batch))
        if ref in times:
            adv, ref_adv = ours[name](), jobs[ref]()
            checks.append(f"{name}: success {success_mask(model, adv, y).float().mean():.0%} vs "
                          f"{success_mask(model, ref_adv, y).float().mean():.0%}, max |adv - ref| "
                          f"{(adv - ref_adv).abs().max().item():.1e}")

    # --- DeepFool -------------------------------------------------------------------------
    def deepfool(on, inputs=x, labels=y, buckets=None):
        return attacks.deepfool(model, inputs, labels, DF_STEPS, OVERSHOOT, on, buckets=buckets)

    def deepfool_untuned():  # the alternative to padding: no cuDNN autotuning at all
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                        allow_tf32=True):
            return deepfool("step", buckets=False)

    sizes, first = {}, {}
    for on in ("step", "total"):  # the floor counts the gradient passes actually made
        seen = []
        hook = model.register_forward_pre_hook(
            lambda module, inputs: seen.append(len(inputs[0])) if torch.is_grad_enabled()
            else None)
        first[on] = time_round_robin({on: lambda: deepfool(on)}, 1, device)[on]  # cold
        hook.remove()
        sizes[on] = seen
    units = time_round_robin(
        {n: (lambda n=n: forward_backward(model, x[:n], y[:n], NUM_CLASSES))
         for n in set(sizes["step"] + sizes["total"])}, args.repeats, device)
    jobs = {"step": lambda: deepfool("step"), "total": lambda: deepfool("total")}
    if device.type == "cuda":
        jobs["untuned"] = deepfool_untuned
    part = min(args.slice or args.batch, args.batch)
    if torchattacks is not None:
        jobs["ta"] = lambda: torchattacks.DeepFool(model, steps=DF_STEPS,
                                                   overshoot=OVERSHOOT)(x[:part], y[:part])
    if foolbox is not None:
        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1))
        attack = foolbox.attacks.L2DeepFoolAttack(steps=DF_STEPS, candidates=None,
                                                  overshoot=OVERSHOOT)
        jobs["fb"] = lambda: attack.run(fmodel, x, y)
    times = time_round_robin(jobs, args.repeats, device)
    scale = args.batch / part
    for on, ref, label in (("step", "ta", "torchattacks"), ("total", "fb", "foolbox")):
        ref_time = times.get(ref)
        if ref == "ta" and ref_time is not None and scale != 1:
            ref_time *= scale
            label += f" (on {part}, x{scale:g})"
        rows.append((f"DeepFool ({on})", times[on], label if ref in times else "-", ref_time,
                     sum(units[n] for n in sizes[on]),
                     per_image[NUM_CLASSES] * sum(sizes[on])))
        if ref in times:
            adv, logits = deepfool(on, x[:part], y[:part]) if ref == "ta" else deepfool(on)
            inputs, labels = (x[:part], y[:part]) if ref == "ta" else (x, y)
            ref_adv = jobs[ref]()
            ours_ok = logits.argmax(1) != labels
            # norms of the inputs both flipped, among those classified correctly to begin with
            both = ours_ok & success_mask(model, ref_adv, labels) & ~success_mask(model, inputs,
                                                                                 labels)
            norms = (adv - inputs).flatten(1).norm(dim=1)[both]
            ref_norms = (ref_adv - inputs).flatten(1).norm(dim=1)[both]
            relative = ((norms - ref_norms).abs() / ref_norms).median().item() if both.any() \
                else float("nan")
            checks.append(f"deepfool-{on} vs {label.split()[0]}: success "
                          f"{ours_ok.float().mean():.0%} vs "
                          f"{success_mask(model, ref_adv, labels).float().mean():.0%}, median "
                          f"L2 {norms.median():.3f} vs {ref_norms.median():.3f} (median "
                          f"relative difference {relative:.1%}), "
                          f"{len(sizes[on])} gradient steps on {sizes[on]} samples")

    if "untuned" in times:
        first["untuned"] = times["untuned"]  # nothing to tune: every call is a first call
        step_row = rows[-2]
        rows.append(("DeepFool (untuned)", times["untuned"], step_row[2],
                     step_row[3], *step_row[4:]))
    print(f"bound: the same work at batch {bound_batch}\n")
    print(f"{'attack':<18}{'repro s':>9}  {'reference':<28}{'ref s':>9}{'vs ref':>8}"
          f"{'floor s':>9}{'vs floor':>9}{'bound s':>9}{'vs bound':>9}")
    for name, ours_s, ref_name, ref_s, floor, bound in rows:
        ref_cell = f"{ref_s:9.3f}{ref_s / ours_s:7.1f}x" if ref_s else f"{'-':>9}{'-':>8}"
        print(f"{name:<18}{ours_s:9.3f}  {ref_name:<28}{ref_cell}{floor:9.3f}"
              f"{ours_s / floor:8.2f}x{bound:9.3f}{ours_s / bound:8.2f}x")
    print("\nDeepFool's first call, cuDNN autotuning of its shapes included (paid once per "
          "evaluation job, a process of its own on a GPU): " + ", ".join(
              f"{on} {first[on]:.3f} s" for on in ("step", "untuned") if on in first))
    print("\nagreement:")
    for line in checks:
        print("  " + line)
    by_name = {row[0]: row for row in rows}
    pgd = by_name["PGD-20"]
    summary = [f"PGD-20 {pgd[1] / pgd[4]:.2f}x floor, {pgd[1] / pgd[5]:.2f}x bound"]
    for on, ref in (("step", "torchattacks"), ("total", "foolbox")):
        row = by_name[f"DeepFool ({on})"]
        if row[3]:
            summary.append(f"DeepFool {row[3] / row[1]:.1f}x faster than {ref}")
    row = by_name["DeepFool (total)"]
    summary.append(f"DeepFool {row[1] / row[4]:.2f}x floor")
    print("\n--attack-images-per-second " + " ".join(
        f"{attack}={args.batch / by_name[row][1]:.1f}"
        for attack, row in (("fgsm", "FGSM"), ("pgd", "PGD-20"), ("deepfool", "DeepFool (step)"))))
    print("\nsummary: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
