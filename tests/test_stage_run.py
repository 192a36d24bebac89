"""The one loop bookkeeper (lmgnn_dist.trainer.run.StageRun) without a DistDGL job: a scripted
loop over a linear model, in a one-process gloo group (progress checkpoints are collective)."""
from __future__ import annotations

import torch

from lmgnn_dist.stages import StageStart
from lmgnn_dist.trainer import GNNTrainer
from lmgnn_dist.trainer.run import StageRun
from test_trainer_units import toy_env, toy_graph


def _loop(trainer, vals, total, evals, patience=None, crash_after=None):
    """Run a scripted stage: loss of step s is 1/s, validation accuracy from ``vals`` (step
    -> acc), the model's weight set to the step number; returns the run."""
    lin = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    run = StageRun(trainer, total, evals, "acc", {"lin": lin}, opt, patience=patience)
    for step in run.steps(lambda: {"mine": step}):
        with torch.no_grad():
            lin.weight.fill_(float(step))
        run.record(step, 1.0 / step, f"loss {1.0 / step:.3f}")
        if run.validation_due(step):
            run.validated(step, {"acc": vals[step], "num_edges": 3}, lin)
        if step == crash_after:
            return run, lin
    return run, lin


def test_steps_record_validate_keep_the_best_and_summarise(tmp_path, one_process_group):
    g, _ = toy_graph()
    trainer = GNNTrainer(toy_env(tmp_path, g), "stage2", StageStart())
    run, lin = _loop(trainer, {2: 0.5, 4: 0.9, 6: 0.7, 8: 0.9, 10: 0.6}, 10, [2, 4, 6, 8, 10])
    assert run.done == 10 and run.losses == [1.0 / s for s in range(1, 11)]
    assert [h["step"] for h in run.history] == [2, 4, 6, 8, 10]
    assert all("num_edges" not in h for h in run.history)  # counts are not metrics
    assert run.best.epoch == 4 and run.best.val["acc"] == 0.9  # ties keep the earlier
    run.best.restore(lin)
    assert lin.weight.item() == 4.0
    s = run.summary()
    assert s["steps"] == 10 and s["best_step"] == 4 and not s["stopped_early"]
    assert s["loss_first"] == (1.0 + 0.5) / 2 and s["loss_last"] == (1 / 9 + 1 / 10) / 2
    run.close(s)


def test_early_stopping_ends_the_loop_after_patience_bad_validations(tmp_path,
                                                                      one_process_group):
    g, _ = toy_graph()
    trainer = GNNTrainer(toy_env(tmp_path, g), "stage3", StageStart())
    vals = {1: 0.8, 2: 0.7, 3: 0.75, 4: 0.9, 5: 0.95}
    run, _ = _loop(trainer, vals, 5, range(1, 6), patience=2)
    assert run.done == 3 and run.stopped and run.summary()["stopped_early"]
    assert run.best.epoch == 1
    # the start model (step 0) is a candidate but does not count toward patience
    run0 = StageRun(trainer, 5, [1], "acc", {}, torch.optim.SGD([torch.zeros(1,
                    requires_grad=True)], lr=1.0), patience=1, name="zero")
    run0.validated(0, {"acc": 0.5}, torch.nn.Linear(1, 1))
    assert run0.early.bad == 0 and not run0.stopped


def test_a_resumed_run_continues_like_an_uninterrupted_one(tmp_path, one_process_group):
    """checkpoint_every=3: a run cut after step 7 resumes after its progress checkpoint
    (step 6) with the same losses, history, best model, early-stopping count and its own
    rank state, and ends where an uninterrupted run ends."""
    g, _ = toy_graph()
    vals = {s: [0.5, 0.6, 0.55, 0.7, 0.65, 0.6, 0.8, 0.75, 0.7, 0.72][s - 1] for s in range(1, 11)}
    ref_env = toy_env(tmp_path / "ref", g, checkpoint_every=3, resume="true")
    ref, ref_lin = _loop(GNNTrainer(ref_env, "stage3", StageStart()), vals, 10, range(1, 11))
    env = toy_env(tmp_path / "cut", g, checkpoint_every=3, resume="true")
    _loop(GNNTrainer(env, "stage3", StageStart()), vals, 10, range(1, 11), crash_after=7)
    lin0 = torch.nn.Linear(1, 1, bias=False)
    resumed = StageRun(GNNTrainer(env, "stage3", StageStart()), 10, range(1, 11), "acc",
                       {"lin": lin0}, torch.optim.SGD(lin0.parameters(), lr=0.1))
    assert resumed.done == 6 and resumed.state["mine"] == 6
    assert resumed.losses == ref.losses[:6] and resumed.history == ref.history[:6]
    assert resumed.modules["lin"].weight.item() == 6.0
    run, lin = _loop(GNNTrainer(env, "stage3", StageStart()), vals, 10, range(1, 11))
    assert run.summary() == ref.summary() and lin.weight.item() == ref_lin.weight.item()
    assert run.best.epoch == ref.best.epoch == 7


def test_a_progress_checkpoint_of_other_inputs_is_not_resumed(tmp_path, one_process_group):
    """A stage cut after step 7 (progress after step 6) and resumed with other inputs (e.g.
    a changed stage3.lm_lr) starts afresh; with the same inputs it resumes after step 6."""
    g, _ = toy_graph()
    vals = {s: 0.5 for s in range(1, 11)}
    env = toy_env(tmp_path / "cut", g, checkpoint_every=3, resume="true")
    was = {"config": {"stage3": {"lm_lr": 1e-5}}}
    _loop(GNNTrainer(env, "stage3", StageStart(inputs=was)), vals, 10, range(1, 11),
          crash_after=7)

    def resumed(inputs):
        lin0 = torch.nn.Linear(1, 1, bias=False)
        return StageRun(GNNTrainer(env, "stage3", StageStart(inputs=inputs)), 10,
                        range(1, 11), "acc", {"lin": lin0},
                        torch.optim.SGD(lin0.parameters(), lr=0.1))

    other = resumed({"config": {"stage3": {"lm_lr": 1e-3}}})
    assert other.done == 0 and other.losses == [] and other.state == {}
    same = resumed(was)
    assert same.done == 6 and same.state["mine"] == 6
