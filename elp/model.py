"""The multi-adapter model: one frozen backbone pass per batch, each row with its own adapter set.

How a mixed batch runs (the serving analogue of multi-LoRA batching):
1. the backbone's front end runs once for all rows;
2. each row gets its own set's P-adapter frames (different K per set; rows padded and masked);
3. the encoder layers run once for the whole batch; forward hooks on the library's own modules apply
   each set's E-adapter (and LayerNorm copies) to that set's rows only, gathered by index;
4. pseudo frames are dropped, then each set's L-adapters (or weighted sum) and head read its rows
   (a head with ``prosody`` also reads pitch/loudness statistics of its rows' waveforms).
Rows whose sets have no E and no P pass through the hooks untouched: they share the plain pass.
In eval mode, sets with identical E- and P-adapters (the same ``backbone_change_signature``) are
routed as one group: their rows take the same path through the encoder anyway.

Step 3 has two implementations with the same result. Per group (the default): each set's module runs
on its rows (index_select, module, index_copy), so the operator count grows with the number of sets
in the batch, which a launch-bound GPU feels (a 4-set batch of 8 cost 1.8x a 1-set batch on an
H200). Gathered: each row's weights are indexed out of the sets' stacked weights and one batched
matmul serves every row (the multi-LoRA "BGMV" idea), a count that does not grow with the sets
(``elp/routing.py``); opt-in, since it did not serve faster on an H200 (benchmarks/README.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from elp.adapter_set import AdapterSet
from elp.backbones.base import Backbone, lengths_to_mask
from elp.decoder_rows import DecoderRows
from elp.errors import ELPError
from elp.heads.prosody import prosody_features
from elp.host_staging import PinnedBatchStaging, copy_home, upload_indices
from elp.model_outputs import EncoderOutput, GroupOutput, Prediction, RowOutput, pad_waveforms
from elp.routing import WeightStacks, gathered_apply, row_slots
from elp.text_intent.branch import pack_row

__all__ = ["EncoderOutput", "GroupOutput", "MultiAdapterModel", "Prediction", "RowOutput", "pad_waveforms"]

# (row indices or None for "every row", adapter set) for the sets that change the backbone pass.
Route = list[tuple[torch.Tensor | None, AdapterSet]]


class MultiAdapterModel(nn.Module):
    """A frozen backbone plus any number of named adapter sets, runnable in mixed batches."""

    def __init__(self, backbone: Backbone, gathered_routing: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        #: True: gathered-weight batched matmuls for mixed batches; False: one set at a time
        self.gathered_routing = gathered_routing
        self._stacks = WeightStacks()  # the gathered routing's stacked weights, kept between batches
        # A plain dict, not an nn.ModuleDict: adapter ids are user data and must not collide with
        # module attribute names ("train", "to", ...); devices and modes are propagated by hand.
        self.adapter_sets: dict[str, AdapterSet] = {}
        self._signatures: dict[str, str | None] = {}
        # The hooks read the running batch's routing from here; thread-local, so that several
        # threads may run inference on the one model (the server's workers) without mixing routes.
        self._routing_state = threading.local()
        self._staging = PinnedBatchStaging()  # a GPU backbone's batches, one pinned buffer per thread
        self._hooks = [self._install_hooks(i, layer) for i, layer in enumerate(backbone.encoder_layers())]
        self.decoder_rows = DecoderRows(backbone)  # trailing zeros, float32 encoder copy, int8 shortlist
        self.eval()  # serving is the default; the training loop calls train() itself

    # ----------------------------------------------------------------- adapter registry
    def add_adapter_set(self, key: str, adapter_set: AdapterSet, *, encode_only: bool = False) -> None:
        """Register a set; refused (``BackboneMismatchError``) if trained for another backbone. ``encode_only``: its
        rows are only encoded, its head never runs, so a decoder set skips its serving state (the int8 shortlist)."""
        self.backbone.identity.check_compatible(adapter_set.backbone_identity)
        self.adapter_sets[key] = adapter_set.to(device=self.backbone.device, dtype=self.backbone.dtype)
        self.decoder_rows.added(key, adapter_set, shortlist=not encode_only)
        if adapter_set.config.rescoring is not None:  # its decoder comes from this encoder's checkpoint
            adapter_set.rescorer_source = self.backbone.source
            adapter_set.refresh_post_processor()
        adapter_set.train(self.training)
        # taken once, as registered; only used in eval mode, where the weights do not move
        self._signatures[key] = adapter_set.backbone_change_signature()

    def remove_adapter_set(self, key: str) -> None:
        del self.adapter_sets[key]
        self._signatures.pop(key, None)
        self._stacks.clear()  # free stacked copies of the removed set's weights now
        self.decoder_rows.removed(self.adapter_sets)

    @property
    def adapter_keys(self) -> list[str]:
        return list(self.adapter_sets.keys())

    def train(self, mode: bool = True) -> MultiAdapterModel:
        super().train(mode)
        self.backbone.train(False)
        for adapter_set in self.adapter_sets.values():
            adapter_set.train(mode)
        return self

    # ----------------------------------------------------------------- hooks
    def _install_hooks(self, index: int, layer: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        handles = [self.backbone.ffn_output_module(layer).register_forward_hook(self._ffn_hook(index))]
        for name, norm in self.backbone.layer_norms(layer).items():
            handles.append(norm.register_forward_hook(self._layer_norm_hook(index, name)))
        return handles

    def _routed(self, source: torch.Tensor, output: torch.Tensor, pick,
                identity: nn.LayerNorm | None = None) -> torch.Tensor | None:
        """Apply each routed set's module (``pick(adapter_set)``, or None to skip) to ``source``, on
        that set's rows only, and put the results in place of ``output``'s rows; None = unchanged.
        ``identity``: the hooked backbone LayerNorm (what rows without a module keep), if any."""
        route = getattr(self._routing_state, "route", ())
        entries = [(rows, pick(aset) if aset.e_adapters is not None else None) for rows, aset in route]
        if all(module is None for _, module in entries):
            return None
        if len(entries) == 1 and entries[0][0] is None:
            return entries[0][1](source).to(output.dtype)
        if self._use_gathered():
            gathered = gathered_apply(source, entries, identity, self._slots_for(entries, source), self._stacks)
            if gathered is not None:
                return gathered.to(output.dtype)
        result = output.clone()  # one copy per hook, then each set writes its rows in place
        for rows, module in entries:
            if module is not None:
                result.index_copy_(0, rows, module(source.index_select(0, rows)).to(output.dtype))
        return result

    def _slots_for(self, entries: list[tuple[torch.Tensor, nn.Module | None]], source: torch.Tensor
                   ) -> tuple[torch.Tensor, bool]:
        """Row slots, computed once per forward for each pattern of which groups have a module here
        (every layer of a batch repeats the same few patterns)."""
        pattern = tuple(module is None for _, module in entries)
        cache = getattr(self._routing_state, "slots", None)
        if cache is None or pattern not in cache:
            slots = row_slots(source.shape[0], entries, source.device)
            if cache is None:
                return slots
            cache[pattern] = slots
        return cache[pattern]

    def _use_gathered(self) -> bool:
        # training keeps the per-set modules in the autograd graph as they are
        return self.gathered_routing and not self.training

    def _ffn_hook(self, index: int):
        """E-adapter on the feed-forward output: ``g_E`` takes that output itself."""

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
            return self._routed(output, output, lambda adapter_set: adapter_set.e_adapters.adapter_for(index))

        return hook

    def _layer_norm_hook(self, index: int, name: str):
        """Per-set LayerNorm copy: recomputed from the norm's input for that set's rows."""

        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor | None:
            return self._routed(inputs[0], output, lambda aset: aset.e_adapters.layer_norm_for(index, name),
                                identity=module if isinstance(module, nn.LayerNorm) else None)

        return hook

    @contextmanager
    def _routing(self, route: Route) -> Iterator[None]:
        self._routing_state.route = route
        self._routing_state.slots = {}
        try:
            yield
        finally:
            self._routing_state.route = []
            self._routing_state.slots = None

    # ----------------------------------------------------------------- forward
    def _groups(self, adapter_keys: list[str]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for row, key in enumerate(adapter_keys):
            if key not in self.adapter_sets:
                raise ELPError(f"adapter set {key!r} is not registered")
            groups.setdefault(key, []).append(row)
        return groups

    def _route_for(self, groups: dict[str, list[int]], batch: int, device: torch.device) -> Route:
        """Row groups for the hooks: one per set that changes the pass, or per distinct E/P signature
        in eval mode; ``None`` rows when one group covers the whole batch (no gather needed)."""
        merged: dict[str, tuple[list[int], AdapterSet]] = {}
        for key, rows in groups.items():
            adapter_set = self.adapter_sets[key]
            if not adapter_set.has_backbone_changes:
                continue
            group = (self._signatures.get(key) or key) if not self.training else key
            merged.setdefault(group, ([], adapter_set))[0].extend(rows)
        if len(merged) == 1:
            rows, adapter_set = next(iter(merged.values()))
            if len(rows) == batch:
                return [(None, adapter_set)]
        indices = upload_indices([sorted(rows) for rows, _ in merged.values()], device)
        return [(index, adapter_set) for index, (_, adapter_set) in zip(indices, merged.values(), strict=True)]

    def encode(self, waveforms: torch.Tensor, lengths: torch.Tensor, adapter_keys: list[str],
               sample_counts: list[int] | None = None) -> EncoderOutput:
        """Backbone pass with each row's E- and P-adapters; returns real frames of every layer.

        An int8 backbone encodes row by row: dynamic int8 picks its activation scales from what one
        call reads, so in a batch float rounding between batch shapes flips occasional int8 steps and a
        row's answer moves with its batch-mates (``benchmarks/int8_batch_mates.py``). One row per call
        makes its answer the one it gets alone, bit for bit, and on a CPU it is no slower (no padding:
        0.85x the time of 4-row Whisper base batches of 1-10 s clips, measured). ``sample_counts``:
        ``lengths`` on the host, when the caller has them (else read back from the device)."""
        if self.backbone.quantization and len(adapter_keys) > 1:
            return self._encode_rows_apart(waveforms, lengths, adapter_keys)
        return self._encode_batch(waveforms, lengths, adapter_keys, sample_counts)

    def _encode_rows_apart(self, waveforms: torch.Tensor, lengths: torch.Tensor, adapter_keys: list[str]
                           ) -> EncoderOutput:
        rows = [self._encode_batch(waveforms[row:row + 1, : int(lengths[row])], lengths[row:row + 1], [key])
                for row, key in enumerate(adapter_keys)]
        width = max(row.frame_counts[0] for row in rows)
        states = [torch.cat([F.pad(row.hidden_states[layer], (0, 0, 0, width - row.hidden_states[layer].shape[1]))
                             for row in rows]) for layer in range(len(rows[0].hidden_states))]
        return EncoderOutput(states, torch.cat([row.lengths for row in rows]),
                             [count for row in rows for count in row.frame_counts])

    def _encode_batch(self, waveforms: torch.Tensor, lengths: torch.Tensor, adapter_keys: list[str],
                      sample_counts: list[int] | None = None) -> EncoderOutput:
        # a decoder row may read a float32 copy (no hooks on it: decoder sets have no E-adapters)
        encoder = self.decoder_rows.encoder_for(adapter_keys, self.adapter_sets)
        device = encoder.device
        # the frame counts the host needs (slicing, widths), from the sample counts on the host: the
        # same integer arithmetic as the device's, without reading a GPU's lengths back (a sync each)
        host_lengths = lengths.cpu() if sample_counts is None else torch.tensor(sample_counts, dtype=torch.long)
        frame_counts = encoder.front_end_lengths(host_lengths).tolist()
        waveforms, lengths = waveforms.to(device), lengths.to(device)
        groups = self._groups(adapter_keys)
        batch = len(adapter_keys)
        frames, frame_lengths = encoder.front_end(waveforms, lengths)

        prompts = {
            key: self.adapter_sets[key].p_adapter().to(frames.dtype)
            for key in groups
            if self.adapter_sets[key].p_adapter is not None
        }
        if prompts:
            row_prompt: list[tuple[torch.Tensor, bool] | None] = [None] * batch
            for key, rows in groups.items():
                if key in prompts:
                    for row in rows:
                        row_prompt[row] = (prompts[key], self.adapter_sets[key].p_adapter.is_prefix)
            sequences = []
            prefix_counts = [0] * batch
            for row in range(batch):
                real = frames[row, : frame_counts[row]]
                if row_prompt[row] is None:
                    sequences.append(real)
                    continue
                prompt, is_prefix = row_prompt[row]
                sequences.append(torch.cat([prompt, real] if is_prefix else [real, prompt]))
                if is_prefix:
                    prefix_counts[row] = prompt.shape[0]
            offsets, sequence_lengths = upload_indices([prefix_counts, [s.shape[0] for s in sequences]], device)
            frames = nn.utils.rnn.pad_sequence(sequences, batch_first=True)
        else:
            sequence_lengths = frame_lengths
        valid = lengths_to_mask(sequence_lengths, frames.shape[1])

        route = self._route_for(groups, batch, device)
        hidden = encoder.before_layers(frames, valid)
        state = encoder.attention_state(hidden, valid)
        states = [hidden]
        with self._routing(route):
            for index, layer in enumerate(encoder.encoder_layers()):
                hidden = encoder.run_layer(index, layer, hidden, state)
                states.append(hidden)
        states[-1] = encoder.after_layers(states[-1])

        max_real = max(frame_counts)
        if prompts:
            positions = offsets[:, None] + torch.arange(max_real, device=device)[None, :]
            positions = positions.clamp(max=frames.shape[1] - 1)
            index = positions.unsqueeze(-1).expand(-1, -1, states[0].shape[-1])
            states = [torch.gather(s, 1, index) for s in states]
        else:
            states = [s[:, :max_real] for s in states]
        return EncoderOutput(states, frame_lengths, frame_counts)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor, adapter_keys: list[str], with_text: bool = False,
        clip_lengths: torch.Tensor | None = None, sample_counts: list[int] | None = None,
    ) -> dict[str, GroupOutput]:
        """Head outputs per adapter set: CTC log-probs (b, T, V), speaker embeddings (b, E) or
        class logits (b, C), each for the rows of the batch that use that set. ``with_text``: sets with
        a text branch also return their rows' transcript log-probs, and sets with a second pass
        (``rescoring``) their last encoder layer (serving; training never reads them).
        ``clip_lengths``: each row's samples before a decoder set's trailing zeros (default ``lengths``);
        a companion classifier (``elp.heads.companion``) reads those frames and its set answers fused
        log-probabilities. ``sample_counts``: ``lengths`` on the host (serving knows them; no GPU read-back)."""
        encoded = self.encode(waveforms, lengths, adapter_keys, sample_counts)
        outputs: dict[str, GroupOutput] = {}
        groups = self._groups(adapter_keys)
        indices = upload_indices(list(groups.values()), encoded.lengths.device)
        for (key, rows), index in zip(groups.items(), indices, strict=True):
            adapter_set = self.adapter_sets[key]
            group_lengths = encoded.lengths.index_select(0, index)
            frame_counts = [encoded.frame_counts[row] for row in rows]
            width = max(frame_counts)
            states = [s.index_select(0, index)[:, :width] for s in encoded.hidden_states]
            features = adapter_set.featurizer(states)
            prosody, waves = None, {}
            head = adapter_set.head
            reads_clip_frames = getattr(head, "reads_clip_frames", False)
            clip_frames = (self._clip_frames(lengths if clip_lengths is None else clip_lengths, index, group_lengths)
                           if adapter_set.companion is not None or reads_clip_frames else None)
            if reads_clip_frames:
                waves["clip_frames"] = clip_frames
            if head.uses_prosody or head.reads_waveform:  # only for the sets whose head reads samples
                picked = index.to(waveforms.device)  # select this set's rows before any device copy
                samples = waveforms.index_select(0, picked).to(index.device)
                sample_lengths = lengths.to(waveforms.device).index_select(0, picked)
                if head.uses_prosody:
                    prosody = prosody_features(samples, sample_lengths)
                if head.reads_waveform:
                    waves["waves"] = (samples, sample_lengths.to(index.device))
            outputs[key] = GroupOutput(rows, head(features, group_lengths, prosody, **waves), group_lengths,
                                       frame_counts)
            if adapter_set.companion is not None:
                companion = adapter_set.companion
                outputs[key].output = companion.fuse(outputs[key].output, companion(states, clip_frames))
            if with_text and adapter_set.text_branch is not None:
                outputs[key].text_log_probs = adapter_set.text_branch(states, group_lengths)
            if with_text and adapter_set.config.rescoring is not None:
                outputs[key].frames = states[-1]
        return outputs

    def _clip_frames(self, clip_lengths: torch.Tensor, index: torch.Tensor,
                     group_lengths: torch.Tensor) -> torch.Tensor:
        """The encoder frames of each row's clip before a decoder set's trailing zeros (rows ``index``)."""
        clip = clip_lengths.to(index.device).index_select(0, index)
        return torch.minimum(self.backbone.front_end_lengths(clip).to(group_lengths), group_lengths)

    @torch.inference_mode()
    def head_outputs(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[RowOutput]:
        """Each row's head output for a mixed batch of clips (1-D, 16 kHz), row i with
        ``adapter_keys[i]``: the model stage alone, so a server can post-process elsewhere while this
        thread runs the next batch."""
        if len(waveforms) != len(adapter_keys):
            raise ELPError("one adapter key per waveform is required")
        padded = self.decoder_rows.with_trailing_silence(waveforms, adapter_keys, self.adapter_sets)
        batch, lengths = self._padded_batch(padded)
        clip_lengths = torch.tensor([w.shape[-1] for w in waveforms])
        rows: list[RowOutput | None] = [None] * len(waveforms)
        groups = self.forward(batch, lengths, adapter_keys, with_text=True, clip_lengths=clip_lengths,
                              sample_counts=[int(w.shape[-1]) for w in padded])
        # one device-to-host copy for the whole batch, not one per set or row (each synchronises a GPU)
        on_device = [tensor for group in groups.values()
                     for tensor in (group.output, group.text_log_probs, group.frames) if tensor is not None]
        home = iter(copy_home(on_device))
        for key, group in groups.items():
            task = self.adapter_sets[key].config.task
            outputs, frame_counts = next(home), group.frame_counts
            text = next(home) if group.text_log_probs is not None else None
            frames = next(home) if group.frames is not None else None
            sequence = outputs.dim() == 3  # (rows, frames, symbols): keep each row's real frames
            for position, row in enumerate(group.rows):
                output = outputs[position, : frame_counts[position]] if sequence else outputs[position]
                if text is not None:  # the transcript's log-probs ride behind the logits (elp.text_intent)
                    output = pack_row(output, text[position, : frame_counts[position]])
                if frames is not None:  # the encoder's frames ride beside the log-probs (elp.decoding.rescoring)
                    output = torch.cat([output, frames[position, : frame_counts[position]].to(output.dtype)], -1)
                rows[row] = RowOutput(task, key, output.clone())  # its own storage: it may be pickled
        return [row for row in rows if row is not None]

    def _padded_batch(self, waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The padded batch and its lengths: on a CUDA backbone already there, copied from pinned
        host memory without blocking this thread; elsewhere on the CPU, as ``pad_waveforms`` makes it."""
        device = self.backbone.device
        if device.type == "cuda":
            return self._staging.upload(waveforms, device)
        return pad_waveforms(waveforms)

    def post_process(self, row: RowOutput) -> Prediction:
        """One row's answer: its set's post-processor on its head output (on this thread)."""
        return Prediction(row.task, row.adapter, **self.adapter_sets[row.adapter].post_processor(row.output))

    def predict(self, waveforms: list[torch.Tensor], adapter_keys: list[str]) -> list[Prediction]:
        """Answers for a mixed batch: :meth:`head_outputs`, then each row's post-processing here."""
        return [self.post_process(row) for row in self.head_outputs(waveforms, adapter_keys)]
