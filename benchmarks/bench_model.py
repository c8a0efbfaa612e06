"""Model speed: generation (prefill and decode), forward+backward, peak memory and FLOPs on
the `tiny` and `small` presets, against the released code's measured numbers on the
speed-baseline configuration (4 prompts, greedy, 32 new tokens: 0.91 s).

    python benchmarks/bench_model.py [--threads 2] [--repeats 7] [--no-write]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, table, write_section  # noqa: E402

from xgenmm.model import XGenMM  # noqa: E402
from xgenmm.model.image_processing import XGenMMImageProcessor  # noqa: E402
from xgenmm.model.presets import preset_config  # noqa: E402

RELEASE_GENERATE_S = 0.91
TARGET_GENERATE_S = 0.6

# The speed baseline's generation prompts: (image sizes, text tokens without the tags).
GEN_PROMPTS = [([(640, 427)], 59), ([(256, 512)], 84), ([(300, 100), (120, 120)], 70), ([(500, 250)], 51)]
# The speed baseline's training batch: (image sizes, text tokens without the tags, supervised).
TRAIN_SAMPLES = [([(640, 480)], 135, 72), ([(400, 200), (180, 360)], 112, 42), ([(800, 220)], 161, 94),
                 ([(210, 700)], 171, 92), ([(300, 300), (500, 160)], 122, 62), ([(112, 56)], 111, 52),
                 ([(150, 200), (90, 60)], 162, 69), ([(1024, 768)], 199, 142)]


def image(w: int, h: int, seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8).numpy())


def build_batch(model: XGenMM, samples, padding_side: str, seed: int = 0, device="cpu"):
    """Random text ids with the image tags after the first 4 tokens; labels on the last
    `supervised` text tokens when given."""
    cfg = model.config
    ip = XGenMMImageProcessor(cfg.image.image_size, cfg.image.mode, cfg.image.grids)
    g = torch.Generator().manual_seed(seed)
    rows, labels, pixels, sizes = [], [], [], []
    for k, sample in enumerate(samples):
        sizes_k, n_text = sample[0], sample[1]
        text = torch.randint(3, cfg.tokens.initial_tokenizer_len - 1, (n_text,), generator=g)
        ids = torch.cat((text[:4], torch.full((len(sizes_k),), cfg.tokens.image_token_id), text[4:]))
        lab = torch.full_like(ids, -100)
        if len(sample) > 2:
            lab[-sample[2]:] = ids[-sample[2]:]
        rows.append(ids)
        labels.append(lab)
        for j, (w, h) in enumerate(sizes_k):
            pixels.append(ip.preprocess_one(image(w, h, 100 * k + j)).to(device))
            sizes.append((w, h))
    length = max(len(r) for r in rows)
    pad = cfg.tokens.pad_token_id
    ids = torch.full((len(rows), length), pad)
    mask = torch.zeros_like(ids)
    lab = torch.full_like(ids, -100)
    for i, (r, l) in enumerate(zip(rows, labels)):
        sl = slice(length - len(r), length) if padding_side == "left" else slice(0, len(r))
        ids[i, sl], mask[i, sl], lab[i, sl] = r, 1, l
    return dict(input_ids=ids.to(device), attention_mask=mask.to(device), pixel_values=pixels, image_sizes=sizes), lab.to(device)


def timed(fn, repeats: int, warmup: int = 2, sync=lambda: None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(preset: str, device: str, repeats: int, dtype: torch.dtype = torch.float32) -> dict:
    torch.manual_seed(0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.device(device):
        model = XGenMM(preset_config(preset)).to(dtype).eval()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gen_batch, _ = build_batch(model, GEN_PROMPTS, "left", device=device)
    new = 32
    prompt_tokens = int(model.fuse_inputs(**gen_batch).attention_mask.sum())
    t_gen = timed(lambda: model.generate(**gen_batch, max_new_tokens=new, eos_token_id=[]), repeats, sync=sync)
    t_prefill = timed(lambda: model.generate(**gen_batch, max_new_tokens=1, eos_token_id=[]), repeats, sync=sync)
    train_batch, labels = build_batch(model, TRAIN_SAMPLES, "right", device=device)
    model.train()

    def fwd_bwd():
        out = model(**train_batch, labels=labels, return_logits=False)
        out.loss.backward()
        model.zero_grad(set_to_none=True)

    t_fb = timed(fwd_bwd, max(3, repeats // 2), sync=sync)
    fused = model.fuse_inputs(**train_batch, labels=labels)
    lm_tokens = int(fused.attention_mask.sum())
    crops = sum(p.shape[0] for p in train_batch["pixel_values"])
    text_tokens = int(train_batch["attention_mask"].sum()) - len(train_batch["pixel_values"])
    flops = model.flops_per_sample(text_tokens / len(TRAIN_SAMPLES), crops / len(TRAIN_SAMPLES))
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return dict(preset=preset, params=model.parameter_counts()["total"], gen_s=t_gen, new_tokens=4 * new,
                prefill_s=t_prefill, prompt_tokens=prompt_tokens, decode_tok_s=4 * (new - 1) / max(t_gen - t_prefill, 1e-9),
                fb_s=t_fb, lm_tokens=lm_tokens, flops=flops, peak=peak)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--presets", default="tiny,small", help="comma-separated model presets")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    results = [bench(p, args.device, args.repeats, dtype) for p in args.presets.split(",")]
    mem = "peak GPU memory (GiB)" if args.device == "cuda" else "peak RSS (GiB)"
    rows = [[r["preset"], f"{r['params'] / 1e6:.2f}M", f"{r['gen_s']:.3f}", f"{r['new_tokens'] / r['gen_s']:.0f}",
             f"{r['prefill_s']:.3f}", f"{r['prompt_tokens'] / r['prefill_s']:.0f}", f"{r['decode_tok_s']:.0f}",
             f"{r['fb_s']:.3f}", f"{r['lm_tokens'] / r['fb_s']:.0f}", f"{r['flops'] / 1e9:.2f}", f"{r['peak']:.2f}"]
            for r in results]
    headers = ["preset", "params", "generate 4x32 (s)", "new tok/s", "prefill (s)", "prefill tok/s", "decode tok/s",
               "fwd+bwd 8 samples (s)", "fwd+bwd LM tok/s", "GFLOPs/sample (train)", mem]
    small = next((r for r in results if r["preset"] == "small"), None)
    verdict = "" if small is None else (f"Generation on the speed-baseline configuration and prompts: {small['gen_s']:.3f} s for 4x32 greedy "
               f"tokens vs the release's {RELEASE_GENERATE_S} s measured on a 2-core AVX2 machine "
               f"({RELEASE_GENERATE_S / small['gen_s']:.2f}x; target <= {TARGET_GENERATE_S} s). "
               f"Forward + backward of the 8-sample SFT batch (no optimiser step): {small['fb_s']:.3f} s "
               f"(the release's forward + backward: 3.76 s of its 3.99 s step).")
    body = f"Machine: {machine()}; device {args.device}, {args.dtype}; median of {args.repeats} runs; random weights, eos ignored.\n\n" \
           f"{table(headers, rows)}\n\n{verdict}"
    print(body)
    if not args.no_write:
        write_section(f"Model ({args.device}, {args.dtype})", body)


if __name__ == "__main__":
    main()
