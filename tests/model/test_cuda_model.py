"""The model on a CUDA device gives what it gives on the CPU: the same forward (fp32, TF32
off) and the same greedy tokens, through the padding-free attention and the preallocated
cache. Skipped where no GPU is present (CI); run on a GPU machine with `pytest tests -k cuda`."""

import copy

import pytest
import torch

from tests.model.test_generation import prompts

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture()
def exact_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _to(batch, device):
    return {k: ([p.to(device) for p in v] if k == "pixel_values" else v.to(device) if torch.is_tensor(v) else v)
            for k, v in batch.items()}


def test_cuda_forward_and_loss_equal_the_cpu_ones(tiny_model, tiny_processor, exact_fp32):
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    batch["labels"] = batch["input_ids"].clone()
    cpu = tiny_model(**batch)
    gpu_model = copy.deepcopy(tiny_model).cuda()
    gpu = gpu_model(**_to(batch, "cuda"))
    assert gpu.logits.device.type == "cuda"
    torch.testing.assert_close(gpu.logits.float().cpu(), cpu.logits, rtol=1e-4, atol=1e-4)
    assert float(gpu.loss.detach()) == pytest.approx(float(cpu.loss.detach()), rel=1e-5)


def test_cuda_greedy_tokens_equal_the_cpu_ones(tiny_model, tiny_processor, exact_fp32):
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images))
    cpu = tiny_model.generate(**batch, max_new_tokens=12, eos_token_id=[])
    gpu_model = copy.deepcopy(tiny_model).cuda()
    gpu = gpu_model.generate(**_to(batch, "cuda"), max_new_tokens=12, eos_token_id=[])
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)


def test_bf16_weights_generate_on_cuda(tiny_model, tiny_processor):
    """The released checkpoints run in bf16 on a GPU: the cast model generates full rows and
    its first greedy token agrees with fp32 on most rows of a random model."""
    texts, images = zip(*prompts(tiny_processor))
    batch = _to(tiny_processor(list(texts), list(images)), "cuda")
    fp32 = copy.deepcopy(tiny_model).cuda().generate(**batch, max_new_tokens=8, eos_token_id=[])
    bf16_model = copy.deepcopy(tiny_model).to("cuda", torch.bfloat16)
    batch["pixel_values"] = [p.to(torch.bfloat16) for p in batch["pixel_values"]]
    bf16 = bf16_model.generate(**batch, max_new_tokens=8, eos_token_id=[])
    assert bf16.shape == fp32.shape == (3, 8)
    assert int((bf16[:, 0] == fp32[:, 0]).sum()) >= 2


def test_cuda_padding_free_training_loss_equals_the_cpu_one(tiny_model, tiny_processor, exact_fp32):
    """The training forward (no logits: the padding-free path, one attention call per sequence,
    the kernels chosen in model/attention.py) on CUDA, in fp32 and under bf16 autocast."""
    texts, images = zip(*prompts(tiny_processor))
    batch = tiny_processor(list(texts), list(images), padding_side="right")
    batch["labels"] = batch["input_ids"].clone()
    cpu = float(tiny_model(**batch, return_logits=False).loss)
    gpu_model = copy.deepcopy(tiny_model).cuda()
    out = gpu_model(**_to(batch, "cuda"), return_logits=False)
    assert float(out.loss) == pytest.approx(cpu, rel=1e-4)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in gpu_model.lang_model.parameters() if p.grad is not None)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        bf16 = float(gpu_model(**_to(batch, "cuda"), return_logits=False).loss)
    assert bf16 == pytest.approx(cpu, rel=2e-2)
