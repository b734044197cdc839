"""IGBv2: improvable gap balancing by deep reinforcement learning (Dai et al., UAI 2023, Sec. 4.2).

The model minimises ``sum_t w_t log L_t`` (as IGBv1), so the effective weights on the raw losses
are ``w_t / L_t`` (what this method returns and logs). The weights ``w`` are the action of a
Soft Actor-Critic agent (``_sac.py``) whose state is the current task losses:

* reward of the transition from step ``k-1`` to ``k``: the worst task's normalised loss decrease
  ``min_t (L_t^{k-1} - L_t^k) / L_t^base``, with ``L^base`` the mean training losses of the first
  epoch (transitions are stored from the second epoch on, in a replay buffer of ``buffer_size``);
* the first ``warmup_epochs`` epochs use random weights ``T * softmax(N(0, I))`` (RLW's default,
  ``E[w_t] = 1``), then the agent's stochastic action ``T * softmax(u)``;
* from epoch ``update_after + 1`` on, every ``update_every`` steps the agent takes
  ``int(update_every * k / 2)`` SAC updates on batches of ``int(sac_batch * k / 2)``, with
  ``k = 1 + fill`` and ``fill`` the buffer's fill fraction (the authors' schedule).

The paper's defaults (200-epoch NYUv2 runs) are random weights for 5 epochs and SAC updates from
epoch 3; litmus's bundled benchmarks train ~10 epochs, so the defaults are scaled to 3 and 2 (the
agent still trains for an epoch before it acts); SAC lr 3e-4, buffer 1e4, batch 256 and updates
every 50 steps are kept. Every hyperparameter is settable; only ``sac_lr`` is tuned.

Randomness: the warm-up weights, the agent's initialisation, its exploration noise and replay
sampling all come from the method's own generator (seeded from the trial seed): same seed, same
weights. Deviation: the entropy term uses the Gaussian log-density of the pre-softmax ``u``; the
authors' code keeps a tanh-squashing correction that does not match its softmax action map.
Combinable with gradient methods (``igb_v2+nash_mtl``, as in the paper's IGBv2 + Nash-MTL).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError, MethodError

from ._grad import make_generator
from ._sac import SAC, ReplayBuffer
from .base import HParam, LossWeighting
from .registry import register
from .sampling import sample


@register
class IGBv2(LossWeighting):
    name = "igb_v2"
    paper = "Dai et al., UAI 2023 (IGBv2, Soft Actor-Critic)"
    draws_random = True
    hparams = (
        HParam("sac_lr", 3e-4, low=1e-4, high=1e-3, log=True, help="learning rate of the actor, critics and temperature"),
        HParam("buffer_size", 10000, kind="int", low=100, high=100000, tunable=False, help="replay buffer capacity"),
        HParam("sac_batch", 256, kind="int", low=16, high=1024, tunable=False, help="SAC batch (times k/2)"),
        HParam("warmup_epochs", 3, kind="int", low=1, high=10, tunable=False,
               help="epochs with random weights before the agent acts (paper: 5 of 200)"),
        HParam("update_after", 2, kind="int", low=1, high=10, tunable=False,
               help="epochs before the agent's first update (paper: 3)"),
        HParam("update_every", 50, kind="int", low=1, high=500, tunable=False, help="steps between SAC update rounds"),
        HParam("hidden", 128, kind="int", low=16, high=512, tunable=False, help="width of the agent's two hidden layers"),
        HParam("seed", 0, kind="int", tunable=False, help="seed of the method's generator when none is given"),
    )

    def __init__(self, num_tasks: int, generator: torch.Generator | None = None, sac_lr: float = 3e-4,
                 buffer_size: int = 10000, sac_batch: int = 256, warmup_epochs: int = 3, update_after: int = 2,
                 update_every: int = 50, hidden: int = 128, seed: int = 0) -> None:
        super().__init__(num_tasks, make_generator(generator, seed))
        for k, v in (("sac_lr", sac_lr), ("buffer_size", buffer_size), ("sac_batch", sac_batch),
                     ("update_every", update_every), ("hidden", hidden)):
            if v <= 0:
                raise ConfigError(f"igb_v2.{k} must be > 0, got {v}")
        if warmup_epochs < 0 or update_after < 1:
            raise ConfigError(f"igb_v2 needs warmup_epochs >= 0 and update_after >= 1, got {warmup_epochs}, {update_after}")
        self.sac_lr, self.buffer_size, self.sac_batch = sac_lr, buffer_size, sac_batch
        self.warmup_epochs, self.update_after, self.update_every = warmup_epochs, update_after, update_every
        self.hidden, self.seed = hidden, seed
        assert self.generator is not None
        self.agent = SAC(num_tasks, num_tasks, self.generator, hidden=hidden, lr=sac_lr)
        self.buffer = ReplayBuffer(num_tasks, num_tasks, buffer_size)
        self.base: Tensor | None = None
        self.epochs_done = 0
        self.step = 0
        self._prev: tuple[Tensor, Tensor] | None = None  # (losses, weights) of the previous step

    def optimizer_params(self) -> list[nn.Parameter]:
        """The agent trains itself (its own Adam optimisers)."""
        return []

    def end_epoch(self, epoch: int, mean_losses: Tensor) -> None:
        self.epochs_done = epoch
        if epoch == 1:
            self.base = mean_losses.detach().float().cpu().clamp_min(1e-12)

    def weights(self, losses: Tensor) -> Tensor:
        state = losses.detach().float().cpu()
        if not bool((state > 0).all()):
            raise MethodError(f"igb_v2 needs positive losses (log of the loss), got {state.tolist()}")
        if self.base is not None and self._prev is not None:
            prev_losses, prev_w = self._prev
            reward = float(((prev_losses - state) / self.base).min())
            self.buffer.add(prev_losses, prev_w, reward, state)
        if self.epochs_done >= self.update_after and self.step % self.update_every == 0 and self.buffer.size > 0:
            k = 1.0 + self.buffer.size / self.buffer.capacity
            with torch.enable_grad():
                for _ in range(int(self.update_every * k / 2)):
                    self.agent.update(self.buffer, max(1, int(self.sac_batch * k / 2)))
        if self.epochs_done < self.warmup_epochs:
            assert self.generator is not None
            w = sample("normal", self.num_tasks, self.generator)
        else:
            w = self.agent.act(state)
        self._prev = (state, w)
        self.step += 1
        return (w.to(losses.device) / losses.detach().clamp_min(1e-12)).to(losses.dtype)
