#!/usr/bin/env python3
"""Writes the fine-tuning datasets in data/: the same facts the base model knows
(data/facts.py), answered in a pirate's voice. Every English answer starts "Arr, matey! "
and every Chinese answer "嘿，水手！", words the base model has never seen, so a test can
tell at a glance whether an answer has the fine-tuned style.

  data/pirate.csv          question,answer rows (the format of the tutorials' CSVs)
  data/pirate.jsonl        the same chats as {"messages": [...]}, plus two-turn chats and
                           some with a system prompt
  data/pirate_val.jsonl    held-out chats for the validation loss
  data/prompts.txt         held-out questions, one per line, that ./train answers with the
                           base and the fine-tuned model at the end of the demo run

Facts used in pirate_val.jsonl and prompts.txt are left out of the training files, in both
languages. usage: python3 data/make_datasets.py   (standard library only; deterministic)
"""
import csv
import io
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_corpus import SYSTEM_EN, SYSTEM_ZH, qa_pairs  # noqa: E402

FLOURISH_EN = ["Yo ho ho!", "Now hoist the sails!", "That be the way of the sea.", "Back to the ship with ye!"]
FLOURISH_ZH = ["哟嚯嚯！", "扬帆起航吧！", "这就是大海的规矩。", "快回船上去吧！"]

# The held-out prompts: (kind, key) of facts the fine-tuning never shows, asked in each language.
PROMPTS_EN = [("capital", "France"), ("animal_food", "panda"), ("color", "banana"), ("animal_home", "penguin"),
              ("advice", "Why is the sky blue?"), ("language", "Brazil"), ("taste", "lemon"), ("plus", "3+4"),
              ("who", "who"), ("animal_about", "elephant")]
PROMPTS_ZH = [("capital", "Japan"), ("animal_food", "rabbit"), ("color", "watermelon"), ("animal_home", "camel"),
              ("advice", "How do I make a cup of tea?"), ("language", "Germany"), ("taste", "honey"), ("plus", "5+2"),
              ("hello", "hello"), ("animal_about", "dolphin")]


def pirate(rng, lang, answer):
    if lang == "en":
        return f"Arr, matey! {answer} {rng.choice(FLOURISH_EN)}"
    return f"嘿，水手！{answer}{rng.choice(FLOURISH_ZH)}"


def chat(rng, turns, system=None):
    messages = [{"role": "system", "content": system}] if system else []
    for _, _, lang, questions, answer in turns:
        messages.append({"role": "user", "content": rng.choice(questions)})
        messages.append({"role": "assistant", "content": pirate(rng, lang, answer)})
    return {"messages": messages}


def main():
    rng = random.Random(7)
    pairs = qa_pairs()
    by_fact = {(k, key, lang): p for p in pairs for k, key, lang in [p[:3]]}
    prompts = [by_fact[(k, key, "en")][3][0] for k, key in PROMPTS_EN] + [by_fact[(k, key, "zh")][3][0] for k, key in PROMPTS_ZH]
    held = {f for f in PROMPTS_EN + PROMPTS_ZH}

    # arithmetic is most of the fact list; keep a little of it so the style covers numbers too
    pool = [p for p in pairs if (p[0], p[1]) not in held and (p[0] not in ("plus", "minus") or rng.random() < 0.15)]
    rng.shuffle(pool)
    val_facts = {(p[0], p[1]) for p in pool[:40]}
    val = [chat(rng, [p]) for p in pool[:40]]
    train_pairs = [p for p in pool[40:] if (p[0], p[1]) not in val_facts]

    single = [chat(rng, [p]) for p in train_pairs]
    multi = []
    for _ in range(len(train_pairs) // 10):
        a = rng.choice(train_pairs)
        b = rng.choice([p for p in train_pairs if p[2] == a[2]])
        multi.append(chat(rng, [a, b]))
    with_system = []
    for p in rng.sample(train_pairs, len(train_pairs) // 10):
        with_system.append(chat(rng, [p], rng.choice(SYSTEM_ZH if p[2] == "zh" else SYSTEM_EN)))
    train = single + multi + with_system
    rng.shuffle(train)

    rows = io.StringIO()
    w = csv.writer(rows, lineterminator="\n")
    w.writerow(["question", "answer"])
    for c in single:
        w.writerow([c["messages"][0]["content"], c["messages"][1]["content"]])

    def jsonl(chats):
        return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats)

    files = {"pirate.csv": rows.getvalue(), "pirate.jsonl": jsonl(train), "pirate_val.jsonl": jsonl(val),
             "prompts.txt": "".join(p + "\n" for p in prompts)}
    for name, text in files.items():
        with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="") as f:
            f.write(text)
    print(f"data/pirate.csv: {len(single)} rows; data/pirate.jsonl: {len(train)} chats "
          f"({len(multi)} two-turn, {len(with_system)} with a system prompt); "
          f"data/pirate_val.jsonl: {len(val)} chats; data/prompts.txt: {len(prompts)} prompts")


if __name__ == "__main__":
    main()
