"""``training.cached --distill-corpus``: the refit's answers on the main corpus' clips are held near the
starting set's (KL from the start's outputs, learning without forgetting); other clips train freely."""

from __future__ import annotations

import copy

import torch

from elp import load_backbone
from elp.tasks import get_task
from elp.testing import make_random_adapter_set
from training.feature_cache import CachedFeatures, head_outputs
from training.loop import HeadBatch, loss_value, teacher_divergence


def test_divergence_is_zero_at_the_teacher_and_reads_only_chosen_rows_and_real_frames():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 5, 4, generator=generator).log_softmax(-1)
    rows, lengths = torch.tensor([True, False, True]), torch.tensor([5, 5, 2])
    assert float(teacher_divergence(teacher, teacher, rows, lengths)) == 0.0
    moved = teacher.clone()
    moved[1] = torch.randn(5, 4, generator=generator)  # a row the teacher does not speak for
    moved[2, 3:] = torch.randn(2, 4, generator=generator)  # frames past that row's length
    assert float(teacher_divergence(moved, teacher, rows, lengths)) == 0.0
    moved[0, 0] = torch.randn(4, generator=generator)
    assert float(teacher_divergence(moved, teacher, rows, lengths)) > 0.0
    per_row = torch.randn(4, 6, generator=generator)
    assert float(teacher_divergence(per_row, per_row, torch.ones(4, dtype=torch.bool), None)) == 0.0


def _states(backbone, count: int, seed: int) -> dict[str, list[torch.Tensor]]:
    """Random cached layer outputs (frames x hidden, every layer) of ``count`` clips."""
    generator = torch.Generator().manual_seed(seed)
    layers, hidden = backbone.num_layers + 1, backbone.hidden_size
    return {f"{seed}-{i}.wav": [torch.randn(12 + i, hidden, generator=generator) for _ in range(layers)]
            for i in range(count)}


def test_distillation_holds_the_corpus_clips_near_the_start(tiny_backbone_dir):
    backbone = load_backbone(tiny_backbone_dir("whisper"))
    start = make_random_adapter_set(backbone, "asr", seed=3)
    corpus, extra = _states(backbone, 4, seed=1), _states(backbone, 4, seed=2)
    views = [corpus | extra]
    targets = {path: [1, 2, 3] for path in views[0]}
    samples = [(0, path) for path in views[0]]
    task = get_task("asr")

    def train(weight: float) -> float:
        torch.manual_seed(0)
        student = copy.deepcopy(start).train()
        source = CachedFeatures(student, views, [None], samples, targets, batch_size=8, sequence_targets=True,
                                teacher=copy.deepcopy(start).eval(), teacher_paths=frozenset(corpus),
                                teacher_weight=weight)
        optimizer = torch.optim.SGD([*student.featurizer.parameters(), *student.head.parameters()], lr=0.5)
        loss_fn = task.build_loss(student, 0)
        for _ in range(5):
            batch = source.forward(samples)
            assert isinstance(batch, HeadBatch) and (batch.teacher is not None) == (weight > 0)
            optimizer.zero_grad()
            loss_value(task, loss_fn, batch).backward()
            optimizer.step()
        student.eval()
        with torch.no_grad():
            states = [corpus[path] for path in corpus]
            lengths = torch.tensor([s[0].shape[0] for s in states])
            return float(teacher_divergence(head_outputs(student, states), head_outputs(start.eval(), states),
                                            torch.ones(len(states), dtype=torch.bool), lengths))

    free, held = train(0.0), train(20.0)
    assert held < 0.5 * free
