"""A small Soft Actor-Critic agent (Haarnoja et al., ICML 2018, with twin critics and a learned
temperature) for IGBv2's loss weights. Not a method (the package skips ``_`` modules).

Every random draw (network initialisation, exploration noise, replay sampling) comes from one
``torch.Generator``, so the same seed gives the same agent and the global RNG is untouched.
Actions are task weights ``T * softmax(u)`` of a Gaussian ``u`` (IGBv2's action map); the
entropy term uses the Gaussian log-density of ``u`` (see igb_v2.py for this choice).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from litmus.errors import ConfigError

from ._grad import draw_seed

_LOG_STD_MIN, _LOG_STD_MAX = -20.0, 2.0


def mlp(sizes: list[int], out_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or out_act:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ReplayBuffer:
    """Ring buffer of transitions (state, action, reward, next state), sampled uniformly with replacement."""

    def __init__(self, state_dim: int, action_dim: int, capacity: int) -> None:
        if capacity < 1:
            raise ConfigError(f"replay buffer capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.state = torch.zeros(capacity, state_dim)
        self.action = torch.zeros(capacity, action_dim)
        self.reward = torch.zeros(capacity, 1)
        self.next_state = torch.zeros(capacity, state_dim)
        self.ptr = 0
        self.size = 0

    def add(self, state: Tensor, action: Tensor, reward: float, next_state: Tensor) -> None:
        i = self.ptr
        self.state[i], self.action[i], self.next_state[i] = state.cpu(), action.cpu(), next_state.cpu()
        self.reward[i, 0] = reward
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if self.size == 0:
            raise RuntimeError("cannot sample an empty replay buffer")
        idx = torch.randint(self.size, (n,), generator=generator)
        return self.state[idx], self.action[idx], self.reward[idx], self.next_state[idx]


class Actor(nn.Module):
    """Gaussian policy over ``u``; the action is ``T * softmax(u)``."""

    def __init__(self, state_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.body = mlp([state_dim, hidden, hidden], out_act=True)
        self.mu = nn.Linear(hidden, action_dim)
        self.log_std = nn.Linear(hidden, action_dim)
        self.action_dim = action_dim

    def forward(self, state: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """Action and the log-density of ``u`` (reparameterised with the given standard normal ``noise``)."""
        h = self.body(state)
        mu = self.mu(h)
        log_std = self.log_std(h).clamp(_LOG_STD_MIN, _LOG_STD_MAX)
        if noise is None:
            u = mu
            logp = torch.zeros(mu.shape[:-1] + (1,), dtype=mu.dtype, device=mu.device)
        else:
            u = mu + log_std.exp() * noise
            logp = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
        return self.action_dim * torch.softmax(u, dim=-1), logp


class SAC(nn.Module):
    """Twin-critic SAC with Polyak target critics and an adaptive temperature (target entropy ``-dim(A)``)."""

    def __init__(self, state_dim: int, action_dim: int, generator: torch.Generator, *, hidden: int = 128,
                 lr: float = 3e-4, gamma: float = 0.99, tau: float = 0.005, alpha: float = 0.2) -> None:
        super().__init__()
        self.generator = generator
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw_seed(generator))
            self.actor = Actor(state_dim, action_dim, hidden)
            self.q1 = mlp([state_dim + action_dim, hidden, hidden, 1], out_act=False)
            self.q2 = mlp([state_dim + action_dim, hidden, hidden, 1], out_act=False)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        for p in list(self.q1_target.parameters()) + list(self.q2_target.parameters()):
            p.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))
        self.target_entropy = -float(action_dim)
        self.gamma, self.tau = gamma, tau
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(list(self.q1.parameters()) + list(self.q2.parameters()), lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.updates = 0

    def _noise(self, shape: torch.Size) -> Tensor:
        return torch.randn(shape, generator=self.generator)

    @torch.no_grad()
    def act(self, state: Tensor, deterministic: bool = False) -> Tensor:
        s = state.detach().float().cpu().unsqueeze(0)
        noise = None if deterministic else self._noise(torch.Size((1, self.actor.action_dim)))
        a, _ = self.actor(s, noise)
        return a[0]

    def update(self, buffer: ReplayBuffer, batch_size: int) -> None:
        """One gradient step of the critics, the actor and the temperature; then the Polyak target update."""
        s, a, r, s2 = buffer.sample(batch_size, self.generator)
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.actor(s2, self._noise(a.shape))
            sa2 = torch.cat([s2, a2], 1)
            target = r + self.gamma * (torch.min(self.q1_target(sa2), self.q2_target(sa2)) - alpha * logp2)
        sa = torch.cat([s, a], 1)
        q_loss = nn.functional.mse_loss(self.q1(sa), target) + nn.functional.mse_loss(self.q2(sa), target)
        self.critic_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self.critic_opt.step()

        new_a, logp = self.actor(s, self._noise(a.shape))
        sa_new = torch.cat([s, new_a], 1)
        q_new = torch.min(self.q1(sa_new), self.q2(sa_new))
        actor_loss = (alpha * logp - q_new).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward(inputs=list(self.actor.parameters()))
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for net, tgt in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for p, pt in zip(net.parameters(), tgt.parameters()):
                    pt.mul_(1.0 - self.tau).add_(self.tau * p)
        self.updates += 1
