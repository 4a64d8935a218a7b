"""The registered result tables (`TABLES`): one `Table` per README table,
each naming its config, seeds, arms and builder; `get(name)`.

A new table is one `Table(...)` entry here (and, if no builder fits, a
builder in `experiments._result_tables`). Private module;
`experiments.results` re-exports `TABLES`, `get` and the BinaryConnect
arms.
"""
from __future__ import annotations

import functools

from experiments._result_tables import GRADCOUNT_DENSE
from experiments._result_tables import GRADCOUNT_RHOS
from experiments._result_tables import ablation_table
from experiments._result_tables import benn_table
from experiments._result_tables import fbs_table
from experiments._result_tables import flags_table
from experiments._result_tables import fpgm_table
from experiments._result_tables import gradcount_arms
from experiments._result_tables import gradcount_table
from experiments._result_tables import lottery_plot
from experiments._result_tables import lottery_table
from experiments._result_tables import mainsub_table
from experiments._result_tables import plain_table
from experiments._result_tables import scratch_table
from experiments._result_types import ResultsError
from experiments._result_types import Table


BINARYCONNECT_ARMS = (
    ("BinaryConnect, deterministic", ()),
    ("float twin", (("binarize", False),)),
    ("BinaryConnect, stochastic",
     (("model_kwargs.kernel_quantizer", "stochastic_sign"),)),
    ("BNN (binary activations)",
     (("model_kwargs.input_quantizer", "ste_sign"),
      ("model_kwargs.activation", "hard_tanh"))))
"""The BinaryConnect tables' arms: the config as shipped and its variants."""

BINARYCONNECT_PAIRS = tuple((arm, "float twin") for arm, _ in
                            BINARYCONNECT_ARMS if arm != "float twin")
"""Each binary variant against its float twin."""


TABLES = {t.name: t for t in (
    Table(
        name="main_job",
        title="Results of the main job: lottery tickets on digits",
        config="experiments/configs/lottery_digits.py", seeds=(0,),
        build=lottery_table, plot=lottery_plot,
        description="lottery_digits.py as shipped: seed 0, 2 seeds per "
        "control"),
    Table(
        name="lottery_mnist5k",
        title="Lottery tickets on real MNIST images (mnist5k)",
        config="experiments/configs/lottery_lenet_mnist5k.py",
        seeds=(0, 1, 2, 3, 4), build=lottery_table, plot=lottery_plot,
        description="LeNet-300-100 on mnist5k, 18 levels, 5 seeds"),
    Table(
        name="tiny_test",
        title="A tiny lottery run (tests only)",
        config="experiments/configs/lottery_digits.py", seeds=(0,),
        overrides=(("num_steps", 20), ("eval_every", 10), ("log_every", 10),
                   ("checkpoint_every", 20), ("lottery.levels", 1),
                   ("lottery.control_seeds", 1)),
        build=lottery_table, plot=None,
        description="tests/test_results.py: 1 level, 20 steps",
        test_only=True),
    Table(
        name="tiny_sweep_test",
        title="A tiny sweep table (tests only)",
        config="tests/_tiny_sweep.py", seeds=(0,), build=flags_table,
        sweep=True, description="tests/test_results.py: a 20-step MLP at "
        "two learning rates", test_only=True),
    Table(
        name="digits_magnitude",
        title="Magnitude pruning on digits (the plain run)",
        config="experiments/configs/digits_magnitude.py",
        seeds=(0, 1, 2, 3, 4),
        arms=(("dense (`--config.pruning.method=none`)",
               (("pruning.method", "none"),)),
              ("magnitude, gradual, layer-wise 80%", ())),
        build=functools.partial(plain_table, compare=((
            "magnitude, gradual, layer-wise 80%",
            "dense (`--config.pruning.method=none`)"),)),
        description="digits_magnitude.py as shipped (4,000 Adam steps, "
        "batch 64) and its dense twin, 5 seeds"),
    Table(
        name="binaryconnect_digits",
        title="BinaryConnect and BNN on digits, with the float twin",
        config="experiments/configs/binaryconnect_digits.py",
        seeds=(0, 1, 2, 3, 4),
        arms=BINARYCONNECT_ARMS,
        build=functools.partial(flags_table, compare=BINARYCONNECT_PAIRS),
        description="binaryconnect_digits.py as shipped (3,000 Adam steps, "
        "batch 64) and its variants, 5 seeds"),
    Table(
        name="binaryconnect_mnist5k",
        title="BinaryConnect and BNN on real MNIST images (mnist5k), with "
        "the float twin",
        config="experiments/configs/binaryconnect_mnist5k.py",
        seeds=(0, 1, 2, 3, 4),
        arms=BINARYCONNECT_ARMS,
        build=functools.partial(flags_table, compare=(
            *BINARYCONNECT_PAIRS,
            ("BinaryConnect, stochastic", "BinaryConnect, deterministic"))),
        description="binaryconnect_mnist5k.py as shipped (3 x 512 binary "
        "MLP, 2,100 Adam steps of batch 100) and its variants, 5 seeds"),
    Table(
        name="repr_digits",
        title="RePr on digits and its ablations",
        config="experiments/configs/repr_digits.py", seeds=(0, 1, 2),
        arms=(("standard training", (("repr.cycles", 0),)),
              ("RePr (orthogonality ranking, orthogonal re-init)", ()),
              ("random drop + random re-init",
               (("repr.ranking", "random"), ("repr.reinit", "random"))),
              ("orthogonality ranking + random re-init",
               (("repr.reinit", "random"),)),
              ("magnitude ranking + orthogonal re-init",
               (("repr.ranking", "magnitude"),))),
        build=functools.partial(flags_table, compare=(
            ("RePr (orthogonality ranking, orthogonal re-init)",
             "standard training"),
            *((a, "RePr (orthogonality ranking, orthogonal re-init)")
              for a in ("random drop + random re-init",
                        "orthogonality ranking + random re-init",
                        "magnitude ranking + orthogonal re-init")))),
        description="repr_digits.py as shipped (vanilla CNN, 3 cycles of "
        "S1 = 400 / S2 = 200 steps, 2,200 SGD steps, batch 64), its "
        "standard-training twin and the ablations, 3 seeds"),
    Table(
        name="repr_mnist5k",
        title="RePr against standard training on real MNIST images "
        "(mnist5k)",
        config="experiments/configs/repr_mnist5k.py", seeds=(0, 1, 2, 3, 4),
        arms=(("standard training", (("repr.cycles", 0),)),
              ("RePr (orthogonality ranking, orthogonal re-init)", ())),
        build=functools.partial(flags_table, compare=((
            "RePr (orthogonality ranking, orthogonal re-init)",
            "standard training"),)),
        description="repr_mnist5k.py as shipped (vanilla CNN, 3 cycles of "
        "S1 = 550 / S2 = 275 steps, 3,025 SGD steps, batch 64) and its "
        "standard-training twin at equal steps, 5 seeds"),
    Table(
        name="benn_digits",
        title="BENN on digits: bagging and boosting, ensemble size k",
        config="experiments/configs/benn_digits.py", seeds=(0, 1, 2),
        arms=(("bagging", ()),
              ("boost_d", (("benn.ensemble", "boost_d"),))),
        build=benn_table,
        description="benn_digits.py as shipped (K = 5 semi-binary NIN "
        "members, 600 Adam steps of batch 64 each) with bagging and with "
        "boost_d, 3 seeds"),
    Table(
        name="gradcount_shapes",
        title="Gradient-count sparsity against L1 and magnitude pruning at "
        "matched sparsity (UNet-tiny, shapes)",
        config="experiments/configs/gradcount_shapes.py", seeds=(0, 1, 2),
        overrides=(("gradcount.scratch", False),),
        arms=(("dense reference", GRADCOUNT_DENSE),
              *(a for rho in GRADCOUNT_RHOS for a in gradcount_arms(rho))),
        build=gradcount_table,
        description="gradcount_shapes.py as shipped (UNet-tiny on the "
        "built-in shapes, 1,500 Adam steps: 300 dense, 900 joint, 300 "
        "masked fine-tune) at rho = 0.2, 0.35, 0.5, its L1 and magnitude "
        "controls matched to each run's sparsity, and the dense "
        "reference; no scratch baselines"),
    Table(
        name="fbs_digits",
        title="FBS on digits: test accuracy and MACs against the density d",
        config="experiments/configs/fbs_digits.py", seeds=(0, 1, 2),
        arms=tuple((str(d), (("model_kwargs.density", d),))
                   for d in (1.0, 0.75, 0.5, 0.25)),
        build=fbs_table,
        description="fbs_digits.py as shipped (FBS CNN 32, 32, pool, 64, "
        "64, the last three convs gated; 1,500 steps, SGD momentum 0.9) at "
        "d = 1, 0.75, 0.5, 0.25, 3 seeds"),
    Table(
        name="ablation_digits",
        title="The optimizer x STE ablation of a binary MLP on digits "
        "(Alizadeh et al. 2019)",
        config="experiments/configs/ablation_digits.py",
        seeds=(0, 1, 2, 3, 4), build=ablation_table, sweep=True,
        description="ablation_digits.py's sweep as shipped: 26 "
        "configurations of a 3 x 256 binary MLP (1,000 steps, constant LR "
        "3e-3 for every optimizer), 5 seeds, 130 runs"),
    Table(
        name="fpgm_digits",
        title="FPGM against the norm criterion on digits",
        config="experiments/configs/fpgm_digits.py", seeds=(0, 1, 2),
        build=fpgm_table, sweep=True,
        description="fpgm_digits.py's sweep as shipped: BatchNorm VGG (32, "
        "32, pool, 64, 64), 2,000 steps, FPGM and the L2 norm at rates 0.4 "
        "and 0.7 (paper variant) and 0.7 (released CIFAR variant), 3 "
        "seeds, 18 runs"),
    Table(
        name="fpgm_scratch_digits",
        title="FPGM on digits against its scratch baselines",
        config="experiments/configs/fpgm_digits.py", seeds=(0, 1, 2),
        arms=(("FPGM, rate 0.4 (paper variant)", ()),
              ("FPGM, rate 0.7 (paper variant)",
               (("filterprune.rate", 0.7),))),
        build=scratch_table,
        description="fpgm_digits.py as shipped (BatchNorm VGG 32, 32, pool, "
        "64, 64; FPGM at rate 0.4, soft pruning after every epoch, 2,000 "
        "steps) and at rate 0.7, with its Scratch-E and Scratch-B baselines "
        "(the pruned architecture from a fresh init), 3 seeds"),
    Table(
        name="mainsub_digits",
        title="Main/subsidiary pruning of a binary NIN on digits, against "
        "greedy and random selection",
        config="experiments/configs/mainsub_digits.py", seeds=(0, 1, 2),
        overrides=(("mainsub.scratch", False),),
        arms=(("budget (default; Adam 1e-3)", ()),
              ("budget, SGD 0.1 on the gates",
               (("mainsub.sub_optimizer", "sgd"), ("mainsub.sub_lr", 0.1)))),
        build=mainsub_table,
        description="mainsub_digits.py as shipped (the budget recipe: 25 % "
        "of each binary layer's filters) and with SGD on the gates, 3 "
        "seeds, no scratch baselines"),
    Table(
        name="mainsub_released",
        title="Main/subsidiary pruning on digits with the released code's "
        "recipe",
        config="experiments/configs/mainsub_digits.py:released",
        seeds=(0, 1, 2), overrides=(("mainsub.scratch", False),),
        arms=(("released", ()),),
        build=mainsub_table,
        description="mainsub_digits.py:released (gates U(-1e-4, 1e-4), Adam "
        "1e-3, alpha = 1e-8 times the kept-filter count), 3 seeds, no "
        "scratch baselines"),
    Table(
        name="mainsub_released_variants",
        title="Main/subsidiary on digits: the released recipe with other "
        "gate settings (seed 0)",
        config="experiments/configs/mainsub_digits.py:released", seeds=(0,),
        overrides=(("mainsub.scratch", False),),
        arms=(("SGD + count penalty", (
            ("mainsub.sub_optimizer", "sgd"), ("mainsub.sub_lr", 0.1),
            ("mainsub.gate_init", 0.5), ("mainsub.alpha", 0.1))),
              ("Adam, gates at 0.05", (("mainsub.gate_init", 0.05),))),
        build=mainsub_table,
        description="mainsub_digits.py:released with the gates at 0.5 under "
        "SGD 0.1 and alpha = 0.1 (a gate is removed when its summed STE "
        "gradient says removing the filter costs nothing, to first order), "
        "and with the gates at 0.05 under Adam (half of Adam's reach lr x "
        "steps); seed 0 only"),
    Table(
        name="slimming_digits",
        title="Network Slimming on digits and its scratch baselines",
        config="experiments/configs/slimming_digits.py", seeds=(0, 1, 2),
        arms=(("Network Slimming, 50% of channels, s = 1e-4", ()),
              ("Network Slimming, 70% of channels, s = 1e-4",
               (("filterprune.prune_fraction", 0.7),))),
        build=scratch_table,
        description="slimming_digits.py as shipped (BatchNorm VGG 32, 32, "
        "pool, 64, 64; 2,000 steps with the L1 penalty, the smallest 50% "
        "of the BatchNorm scales pruned, 1,000 fine-tune steps; then "
        "Scratch-E and Scratch-B) and at 70% pruned, 3 seeds"),
)}


def get(name: str) -> Table:
  """The registered table `name`; ResultsError naming the known ones."""
  if name not in TABLES:
    raise ResultsError(f"unknown table {name!r}; known tables: "
                       f"{', '.join(TABLES)}")
  return TABLES[name]

