"""The one training loop: schedule, accumulation, the non-finite stop, atomic checkpoints and exact resume,
on a small regression model whose batches are a function of the step (as every trainer's are)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from msa_hf.training.loop import (
    Checkpoints,
    LoopSettings,
    NonFiniteLossError,
    TrainingLoop,
    constant_rate,
)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _batches(loop: TrainingLoop, size: int = 6):
    """Each micro-batch is drawn from the micro-step: a resumed loop sees what an unbroken one would."""
    while True:
        generator = torch.Generator().manual_seed(1000 + loop.micro)
        inputs = torch.randn(size, 4, generator=generator)
        yield inputs, 0.5 * inputs.sum(dim=1, keepdim=True)


def _loss(loop: TrainingLoop):
    def loss_of(batch, micro):
        inputs, targets = batch
        error = loop.model(inputs) - targets
        return (error**2).mean(), {"abs": error.abs().mean()}

    return loss_of


def _train(settings: LoopSettings, checkpoints: Checkpoints | None = None, stop_at: int | None = None):
    loop = TrainingLoop(_model(), settings, checkpoints=checkpoints)
    if checkpoints is not None and checkpoints.latest() is not None:
        loop.resume(checkpoints.latest())
    stop_early = None if stop_at is None else (lambda: loop.step >= stop_at)
    finished = loop.run(_batches(loop), _loss(loop), stop_early=stop_early)
    return loop, finished


def _weights(loop: TrainingLoop) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in loop.unwrapped.state_dict().items()}


def test_the_loop_runs_at_the_schedules_rates_and_reports_each_step():
    settings = LoopSettings(steps=12, learning_rate=0.1, warmup_steps=3)
    loop = TrainingLoop(_model(), settings)
    held_out = next(_batches(_AtMicro(-1), size=64))
    before = _loss(loop)(held_out, 0)[0].item()
    seen: list[tuple[int, float, float]] = []

    def record(step, loss, parts):
        seen.append((step, loss, loop.optimizer.param_groups[0]["lr"]))
        assert set(parts) == {"abs"} and isinstance(parts["abs"], float)

    assert loop.run(_batches(loop), _loss(loop), record)
    reference = torch.optim.AdamW(_model().parameters(), lr=0.1)
    schedule = get_cosine_schedule_with_warmup(reference, 3, 12)
    after_each_step = []
    for _ in range(12):
        reference.step()
        schedule.step()
        after_each_step.append(schedule.get_last_lr()[0])
    assert [step for step, _, _ in seen] == list(range(1, 13))
    assert [rate for _, _, rate in seen] == pytest.approx(after_each_step)
    assert loop.losses == [loss for _, loss, _ in seen]
    assert _loss(loop)(held_out, 0)[0].item() < 0.8 * before  # it learns


def test_constant_rate_keeps_the_learning_rate():
    loop = TrainingLoop(_model(), LoopSettings(steps=5, learning_rate=0.02), schedule=constant_rate)
    rates = []
    loop.run(_batches(loop), _loss(loop), lambda *_: rates.append(loop.optimizer.param_groups[0]["lr"]))
    assert rates == [0.02] * 5


def test_a_resumed_run_ends_with_the_weights_of_an_unbroken_one(tmp_path):
    settings = LoopSettings(steps=6, learning_rate=0.05, warmup_steps=2, checkpoint_every=2)
    unbroken, _ = _train(settings, Checkpoints(tmp_path / "unbroken"))
    checkpoints = Checkpoints(tmp_path / "broken")
    _, finished = _train(settings, checkpoints, stop_at=3)
    assert not finished
    assert json.loads((checkpoints.latest() / "trainer_state.json").read_text())["step"] == 3
    resumed, finished = _train(settings, checkpoints)
    assert finished and resumed.step == 6
    for name, value in _weights(unbroken).items():
        torch.testing.assert_close(_weights(resumed)[name], value, rtol=0, atol=0, msg=name)
    # rolling layout: the two newest checkpoints and a pointer to the last
    assert sorted(p.name for p in checkpoints.root.glob("step-*")) == ["step-0000004", "step-0000006"]
    assert checkpoints.latest().name == "step-0000006"


def test_gradient_accumulation_makes_one_step_of_the_micro_batches():
    # two micro-batches of 6 accumulated == one batch of 12 (mean loss over equal halves)
    accumulated = TrainingLoop(
        _model(), LoopSettings(steps=1, learning_rate=0.1, gradient_accumulation_steps=2, max_grad_norm=None)
    )
    accumulated.run(_batches(accumulated), _loss(accumulated))
    assert (accumulated.step, accumulated.micro) == (1, 2)
    whole = TrainingLoop(_model(), LoopSettings(steps=1, learning_rate=0.1, max_grad_norm=None))
    halves = [next(_batches(accumulated_copy)) for accumulated_copy in (_AtMicro(0), _AtMicro(1))]
    batch = (torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves]))
    whole.run(iter([batch]), _loss(whole))
    for name, value in _weights(whole).items():
        torch.testing.assert_close(_weights(accumulated)[name], value, rtol=1e-5, atol=1e-6, msg=name)


class _AtMicro:
    def __init__(self, micro: int) -> None:
        self.micro = micro


def test_a_non_finite_loss_stops_before_the_step_is_applied(tmp_path):
    settings = LoopSettings(steps=5, learning_rate=0.05, checkpoint_every=2)
    checkpoints = Checkpoints(tmp_path, rolling=False)
    loop = TrainingLoop(_model(), settings, checkpoints=checkpoints)
    good = _loss(loop)
    applied: dict[str, torch.Tensor] = {}

    def poisoned(batch, micro):
        loss, parts = good(batch, micro)
        if micro == 3:
            applied.update(_weights(loop))
            return loss * float("nan"), parts
        return loss, parts

    with pytest.raises(NonFiniteLossError, match=r"step 4: .*the last checkpoint \(checkpoint\) is intact"):
        loop.run(_batches(loop), poisoned)
    assert loop.step == 3
    for name, value in _weights(loop).items():
        assert torch.equal(value, applied[name]) and torch.isfinite(value).all(), name
    # single layout: one folder, its own state, and progress.json beside it
    assert json.loads((tmp_path / "progress.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text())["step"] == 2


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    import msa_hf.training.loop as loop_module

    settings = LoopSettings(steps=4, learning_rate=0.05, checkpoint_every=2)
    checkpoints = Checkpoints(tmp_path)
    loop = TrainingLoop(_model(), settings, checkpoints=checkpoints)
    loop.run(_batches(loop), _loss(loop), stop_early=lambda: loop.step >= 2)
    before = sorted(path.name for path in checkpoints.latest().iterdir())
    original = loop_module.save_training_state

    def killed_while_writing(accelerator, folder):
        original(accelerator, folder)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(loop_module, "save_training_state", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        loop.run(_batches(loop), _loss(loop))
    assert checkpoints.latest().name == "step-0000002"
    assert sorted(path.name for path in checkpoints.latest().iterdir()) == before
    assert checkpoints.read_state(checkpoints.latest())["step"] == 2


def test_a_model_with_nothing_to_train_is_refused():
    model = _model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        TrainingLoop(model, LoopSettings(steps=1, learning_rate=0.1))


def test_the_loop_clocks_its_steps_and_the_waits_for_data_apart_from_its_hooks():
    """The throughput a run reports: steps after the first, data waits inside them, hooks outside."""
    import time

    settings = LoopSettings(steps=5, learning_rate=0.1, gradient_accumulation_steps=2)
    loop = TrainingLoop(_model(), settings)
    plain = _batches(loop)

    def slow_batches():
        while True:
            time.sleep(0.05)  # a data loader that cannot keep up
            yield next(plain)

    loop.run(slow_batches(), _loss(loop), after_step=lambda *_: time.sleep(0.2))  # a slow validation
    timing = loop.timing
    assert timing.micro_batches == 8  # the first step's two micro-batches are its own
    assert timing.data_seconds >= 8 * 0.05 and timing.first_step_seconds >= 2 * 0.05
    # the hooks' 4 x 0.2 s (after steps 1-4; the last hook runs after the clock stops) are not step time
    assert timing.seconds < 0.2 + timing.data_seconds
    assert 0.5 < timing.data_share <= 1.0


class _OneOfTwoProcesses:
    """The part of an accelerator that `Checkpoints.save` uses, for one of two processes run as threads: each
    writes its own file into the checkpoint folder (as accelerate writes each process's random state), the
    second one `delay` seconds later."""

    def __init__(self, index: int, barrier: threading.Barrier, delay: float) -> None:
        self.process_index, self.barrier, self.delay = index, barrier, delay
        self.is_main_process = index == 0

    def wait_for_everyone(self) -> None:
        self.barrier.wait(timeout=5)

    def save_state(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        time.sleep(self.delay)
        (Path(folder) / f"random_states_{self.process_index}.pkl").write_bytes(b"state")


@pytest.mark.parametrize("rolling", [True, False])
def test_a_checkpoint_is_moved_into_place_only_after_every_process_wrote_into_it(tmp_path, rolling):
    barrier = threading.Barrier(2)
    checkpoints = Checkpoints(tmp_path, rolling=rolling)
    errors: list[Exception] = []

    def save(index: int) -> None:
        try:
            checkpoints.save(_OneOfTwoProcesses(index, barrier, delay=0.3 * index), 2, {"micro": 2})
        except Exception as error:  # raised in the thread: reported by the assertion below
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=save, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    saved = checkpoints.latest()
    assert sorted(path.name for path in saved.iterdir()) == [
        "random_states_0.pkl", "random_states_1.pkl", "trainer_state.json",
    ]  # fmt: skip
    assert checkpoints.read_state(saved) == {"step": 2, "micro": 2}
