"""Which demo model learns to count shapes on a CPU in minutes? A plain torch loop, no hone training.

    python examples/shapes/measure.py --language-model smollm2 --steps 300   # (b) SmolLM2 + new vision tower
    python examples/shapes/measure.py --language-model tiny --steps 300      # (a) everything random

(b) trains the vision tower and projector fully and a LoRA (rank 16, all linear layers) on the
pretrained SmolLM2-135M-Instruct; (a) trains every weight of a randomly initialised small VLM. Both use
the same tokenizer, pictures and answer-only loss. Held-out accuracy is the share of the 100 held-out
pictures whose first answer token (greedy) is the right digit; it is printed every --eval-every steps
with the seconds spent training so far (evaluation time excluded). One thread by default. The seed
draws the model's initial weights and the pictures (the held-out ones follow the --train training ones).
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch

from hone.examples.shapes import demo_vlm, generate_pictures, render
from hone.models.load import resolve_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language-model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train", type=int, default=400, help="training pictures (cycled)")
    parser.add_argument("--heldout", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-4, help="1e-3 stalls at chance for hundreds of steps")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patch-size", type=int, default=16, help="16: one patch per grid cell; 8: 2 x 2")
    parser.add_argument("--scale-factor", type=int, default=1, help="pixel shuffle (2 with 8 px patches)")
    parser.add_argument("--out", help="write the curve as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    text_dir = resolve_model("smollm2-135m-instruct").path if args.language_model == "smollm2" else None
    model, processor = demo_vlm(text_dir, seed=args.seed, vision={"patch_size": args.patch_size},
                                scale_factor=args.scale_factor)
    trainable = _trainable(model, lora=text_dir is not None)
    print(f"{args.language_model}: {sum(p.numel() for p in trainable):,} trainable of "
          f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)

    items = generate_pictures(args.train + args.heldout, args.seed)
    train_batches = [_batch(processor, items[i:i + args.batch_size], with_answer=True)
                     for i in range(0, args.train, args.batch_size)]
    heldout = items[args.train:]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    curve, seconds, order = [], 0.0, list(range(len(train_batches)))
    rng = random.Random(args.seed)
    for step in range(1, args.steps + 1):
        if (step - 1) % len(order) == 0:
            rng.shuffle(order)
        started = time.perf_counter()
        model.train()
        loss = _answer_loss(model, train_batches[order[(step - 1) % len(order)]])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        seconds += time.perf_counter() - started
        if step % args.eval_every == 0 or step == args.steps:
            accuracy = _accuracy(model, processor, heldout)
            curve.append({"step": step, "seconds": round(seconds, 1), "loss": round(loss.item(), 4),
                          "heldout_accuracy": accuracy})
            print(json.dumps(curve[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "curve": curve}, f, indent=1)


def _answer_loss(model, batch):
    """Cross-entropy on the answer tokens, with the LM head applied at those positions only."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.model(**inputs).last_hidden_state[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[keep]).float(), labels[keep])


def _trainable(model, *, lora: bool) -> list:
    """LoRA on the text model plus the whole vision tower and projector, or every weight."""
    if lora:
        from peft import LoraConfig, inject_adapter_in_model

        inject_adapter_in_model(LoraConfig(r=16, lora_alpha=32, target_modules=r".*text_model.*_proj"), model)
        for name, param in model.named_parameters():
            param.requires_grad = "lora_" in name or ".vision_model." in name or ".connector." in name
    return [p for p in model.parameters() if p.requires_grad]


def _messages(item: dict, with_answer: bool) -> list[dict]:
    messages = [{"role": "user", "content": [{"type": "text", "text": item["question"]}, {"type": "image"}]}]
    return messages + ([{"role": "assistant", "content": item["answer"]}] if with_answer else [])


def _batch(processor, items: list[dict], *, with_answer: bool):
    """Tokenized pictures and questions; with answers, labels on the answer tokens only (right padding)."""
    texts = [processor.apply_chat_template(_messages(it, with_answer), add_generation_prompt=not with_answer,
                                           tokenize=False) for it in items]
    processor.tokenizer.padding_side = "right" if with_answer else "left"
    batch = processor(text=texts, images=[[render(it)] for it in items], return_tensors="pt", padding=True)
    if with_answer:
        labels = torch.full_like(batch["input_ids"], -100)
        for row, item in enumerate(items):
            prompt = processor.apply_chat_template(_messages(item, False), add_generation_prompt=True, tokenize=False)
            start = len(processor(text=[prompt], images=[[render(item)]])["input_ids"][0])
            end = int(batch["attention_mask"][row].sum())
            labels[row, start:end] = batch["input_ids"][row, start:end]
        batch["labels"] = labels
    return batch


@torch.no_grad()
def _accuracy(model, processor, items: list[dict], batch_size: int = 25) -> float:
    model.eval()
    digits = {processor.tokenizer.convert_tokens_to_ids(str(n)): str(n) for n in range(10)}
    right = 0
    for i in range(0, len(items), batch_size):
        part = items[i:i + batch_size]
        logits = model(**_batch(processor, part, with_answer=False)).logits[:, -1]
        predicted = logits.argmax(-1).tolist()
        right += sum(digits.get(token) == item["answer"] for token, item in zip(predicted, part))
    return right / len(items)


if __name__ == "__main__":
    main()
