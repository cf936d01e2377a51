"""Two gloo ranks running FakeCLR (and 2C) on different data: queues and heads stay identical;
InsGen's real and fake heads start as independent draws, the same on both ranks."""

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    sys.path[:0] = [TESTS_DIR, REPO_DIR]
    from contrastive_standins import TinyD, TinyG, train_steps
    from training.contrastive import resolve_method
    from training.method_stack import build_method

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        opt = dict(lr=0.002, betas=(0.0, 0.99), eps=1e-8)
        small = dict(head_hidden_dim=16, head_out_dim=8, d_embed_dim=8)
        torch.manual_seed(1)  # identical networks on both ranks, as DDP would broadcast
        G, D = TinyG(c_dim=3), TinyD(c_dim=3)
        fake = resolve_method("fakeclr", {**small, "fqs": 12}, dataset_size=100, mirror=False, batch=8)
        hook = build_method(fake, G, D, torch.device("cpu"), opt, opt, 4, 16, total_kimg=1, batch_size=8)
        train_steps(G, D, hook, num_steps=2, batch=4, c_dim=3, seed=100 + rank, global_batch=8)  # different latents per rank
        cg = resolve_method("contragan", small, dataset_size=100, mirror=False, batch=8)
        hook_2c = build_method(cg, G, D, torch.device("cpu"), opt, opt, 4, 16, total_kimg=1, batch_size=8)
        train_steps(G, D, hook_2c, num_steps=2, batch=4, c_dim=3, seed=200 + rank, global_batch=8)
        insgen = resolve_method("insgen", {**small, "fqs": 12, "rqs": 12}, dataset_size=100, mirror=False, batch=8)
        torch.manual_seed(rank)  # the global RNG differs per rank, as in training (seed x num_gpus + rank)
        hook_ins = build_method(insgen, G, D, torch.device("cpu"), opt, opt, 4, 16, total_kimg=1, batch_size=8, seed=7)
        torch.save({"queue": hook.fake.queue.state_dict(), "head": hook.fake.head.state_dict(),
                    "head_2c": hook_2c.head.state_dict(), "insgen_real": hook_ins.real.head.state_dict(),
                    "insgen_fake": hook_ins.fake.head.state_dict()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_share_queue_and_heads(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    q0, q1 = r0["queue"], r1["queue"]
    assert q0["_extra_state"] == q1["_extra_state"] and q0["_extra_state"]["num_inserted"] == 16  # 2 steps x 2 ranks x 4
    for name in ("keys", "stamps", "active"):
        assert torch.equal(q0[name], q1[name]), name
    assert sorted(q0["stamps"].tolist()) == [0] * 4 + [1] * 8  # iteration 1's gathered 8 keys + 4 survivors
    assert torch.equal(q0["active"], torch.ones(12, dtype=torch.bool))
    assert torch.allclose(q0["keys"].norm(dim=1), torch.ones(12))
    for part in ("head", "head_2c", "insgen_real", "insgen_fake"):
        for key in r0[part]:
            assert torch.equal(r0[part][key], r1[part][key]), (part, key)
    real, fake = r0["insgen_real"]["query_mlp.fc1.weight"], r0["insgen_fake"]["query_mlp.fc1.weight"]
    assert real.shape == fake.shape and not torch.allclose(real, fake)
    # iteration 1 wrote rank 0's keys to slots 8-11 and (wrapping) rank 1's to 0-3: different data, different keys
    assert not torch.allclose(q0["keys"][8:12], q0["keys"][0:4])
