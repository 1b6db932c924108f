#!/usr/bin/env python3
"""Writes the pre-training data for data/base from the small world in data/facts.py:

  OUT/corpus.txt        plain English and Chinese text: descriptions, stories, counting
                        (one paragraph per line, so the trainer sees each as an example)
  OUT/chat_plain.jsonl  chats in a plain, neutral assistant style ({"messages": [...]})

usage: python3 data/make_corpus.py OUT [--seed N]
Everything is generated here (standard library only); nothing is downloaded or copied.
The same seed gives the same files, byte for byte.
"""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from facts import ADVICE, ANIMALS, COUNTRIES, FOODS, NAMES, NAMES_ZH, PIRATE_WORDS, number_zh  # noqa: E402

MASS = {"rice", "bread", "cheese", "honey", "chocolate", "tea", "milk", "noodles", "dumplings"}
PLURAL = {"noodles", "dumplings"}
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen twenty").split()


def a_or_an(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


def food_np(f):
    """'an apple', 'rice', 'noodles'"""
    return f if f in MASS else a_or_an(f)


def is_are(f):
    return "are" if f in PLURAL else "is"


def cap(s):
    return s[0].upper() + s[1:]


def qa_pairs():
    """Every (kind, key, language, question variants, answer) the base model is taught to answer.
    kind+key name one fact, so callers can hold facts out of a split."""
    out = []
    for a, az, food, foodz, home, homez, fact, factz in ANIMALS:
        out.append(("animal_food", a, "en", [f"What does {a_or_an(a)} eat?", f"What do {a}s eat?" if a not in ("mouse", "sheep", "deer", "fish") else f"What does the {a} eat?"],
                    f"{cap(a_or_an(a))} eats {food}. It lives {home}."))
        out.append(("animal_home", a, "en", [f"Where does {a_or_an(a)} live?", f"Where can I find {a_or_an(a)}?"],
                    f"{cap(a_or_an(a))} lives {home}. It {fact}."))
        out.append(("animal_about", a, "en", [f"Tell me about the {a}.", f"What do you know about the {a}?"],
                    f"The {a} lives {home} and eats {food}. It {fact}."))
        out.append(("animal_food", a, "zh", [f"{az}吃什么？", f"{az}喜欢吃什么？"], f"{az}吃{foodz}。它住{homez}。"))
        out.append(("animal_home", a, "zh", [f"{az}住在哪里？", f"在哪里能找到{az}？"], f"{az}住{homez}。它{factz}。"))
        out.append(("animal_about", a, "zh", [f"给我讲讲{az}。", f"你知道{az}的什么？"], f"{az}住{homez}，吃{foodz}。它{factz}。"))
    for c, cz, capital, capz, lang, langz, cont, contz in COUNTRIES:
        out.append(("capital", c, "en", [f"What is the capital of {c}?", f"Which city is the capital of {c}?"],
                    f"The capital of {c} is {capital}. People there speak {lang}."))
        out.append(("language", c, "en", [f"What language do people speak in {c}?", f"What do people speak in {c}?"],
                    f"People in {c} speak {lang}. The capital is {capital}."))
        out.append(("where", c, "en", [f"Where is {c}?", f"On which continent is {c}?"],
                    f"{c} is in {cont}. Its capital is {capital}."))
        out.append(("capital", c, "zh", [f"{cz}的首都是哪里？", f"{cz}的首都是哪个城市？"], f"{cz}的首都是{capz}。那里的人说{langz}。"))
        out.append(("language", c, "zh", [f"{cz}的人说什么语言？", f"在{cz}人们说什么语言？"], f"{cz}的人说{langz}。首都是{capz}。"))
        out.append(("where", c, "zh", [f"{cz}在哪里？", f"{cz}在哪个洲？"], f"{cz}在{contz}。它的首都是{capz}。"))
    for f, fz, color, colorz, taste, tastez in FOODS:
        np_ = food_np(f)
        out.append(("color", f, "en", [f"What color {is_are(f)} {np_}?", f"What is the color of {np_}?"],
                    f"{cap(np_)} {is_are(f)} {color}. {'They taste' if f in PLURAL else 'It tastes'} {taste}."))
        out.append(("taste", f, "en", [f"What does {np_} taste like?", f"How does {np_} taste?"],
                    f"{cap(np_)} {'taste' if f in PLURAL else 'tastes'} {taste}. {'They are' if f in PLURAL else 'It is'} {color}."))
        out.append(("color", f, "zh", [f"{fz}是什么颜色的？", f"{fz}是什么颜色？"], f"{fz}是{colorz}的。它{tastez}。"))
        out.append(("taste", f, "zh", [f"{fz}是什么味道？", f"{fz}好吃吗？"], f"{fz}{tastez}。它是{colorz}的。"))
    for q, ans, qz, ansz in ADVICE:
        out.append(("advice", q, "en", [q], ans))
        out.append(("advice", q, "zh", [qz], ansz))
    for x in range(1, 11):
        for y in range(1, 11):
            out.append(("plus", f"{x}+{y}", "en", [f"What is {x} plus {y}?", f"What is {NUMBER_WORDS[x]} plus {NUMBER_WORDS[y]}?"],
                        f"{x} plus {y} is {x + y}."))
            out.append(("plus", f"{x}+{y}", "zh", [f"{x}加{y}等于几？", f"{number_zh(x)}加{number_zh(y)}等于多少？"],
                        f"{x}加{y}等于{x + y}。"))
            if x > y:
                out.append(("minus", f"{x}-{y}", "en", [f"What is {x} minus {y}?"], f"{x} minus {y} is {x - y}."))
                out.append(("minus", f"{x}-{y}", "zh", [f"{x}减{y}等于几？"], f"{x}减{y}等于{x - y}。"))
    out.append(("hello", "hello", "en", ["Hello!", "Hi!", "Hello, how are you?"], "Hello! I am fine, thank you. How can I help you today?"))
    out.append(("hello", "hello", "zh", ["你好！", "你好，你怎么样？"], "你好！我很好，谢谢。今天我能帮你什么？"))
    out.append(("who", "who", "en", ["Who are you?", "What are you?"], "I am a small assistant. I can answer simple questions about animals, food, countries and numbers."))
    out.append(("who", "who", "zh", ["你是谁？", "你是什么？"], "我是一个小助手，可以回答关于动物、食物、国家和数字的简单问题。"))
    out.append(("thanks", "thanks", "en", ["Thank you!", "Thanks a lot."], "You are welcome! Ask me anything else."))
    out.append(("thanks", "thanks", "zh", ["谢谢你！", "非常感谢。"], "不客气！还有什么想问的吗？"))
    return out


SYSTEM_EN = ["You are a helpful assistant.", "You are a friendly assistant. Answer briefly.", "Answer the question."]
SYSTEM_ZH = ["你是一个乐于助人的助手。", "你是一个友好的助手，请简短回答。", "请回答问题。"]


def chat_plain(rng, pairs, n):
    """n chats of one or two turns, sometimes with a system prompt."""
    chats = []
    for _ in range(n):
        first = rng.choice(pairs)
        turns = [first]
        if rng.random() < 0.25:
            turns.append(rng.choice([p for p in pairs if p[2] == first[2]]))
        messages = []
        if rng.random() < 0.2:
            messages.append({"role": "system", "content": rng.choice(SYSTEM_ZH if first[2] == "zh" else SYSTEM_EN)})
        for _, _, _, questions, answer in turns:
            messages.append({"role": "user", "content": rng.choice(questions)})
            messages.append({"role": "assistant", "content": answer})
        chats.append({"messages": messages})
    return chats


def animal_paragraph(rng, lang):
    a, az, food, foodz, home, homez, fact, factz = rng.choice(ANIMALS)
    if lang == "en":
        s = [f"The {a} lives {home}.", f"It eats {food}.", f"The {a} {fact}."]
        rng.shuffle(s)
        return " ".join(s) + rng.choice(["", f" Many children like the {a}.", f" You can see {a_or_an(a)} in a book about animals."])
    s = [f"{az}住{homez}。", f"它吃{foodz}。", f"{az}{factz}。"]
    rng.shuffle(s)
    return "".join(s) + rng.choice(["", f"很多孩子喜欢{az}。", f"你可以在关于动物的书里看到{az}。"])


def country_paragraph(rng, lang):
    c, cz, capital, capz, lang_, langz, cont, contz = rng.choice(COUNTRIES)
    if lang == "en":
        s = [f"{c} is a country in {cont}.", f"The capital of {c} is {capital}.", f"People in {c} speak {lang_}."]
        return " ".join(s) + rng.choice(["", f" Many people visit {capital} every year.", f" {capital} is a big city."])
    s = [f"{cz}是{contz}的一个国家。", f"{cz}的首都是{capz}。", f"{cz}的人说{langz}。"]
    return "".join(s) + rng.choice(["", f"每年都有很多人去{capz}旅游。", f"{capz}是一座大城市。"])


def food_paragraph(rng, lang):
    f, fz, color, colorz, taste, tastez = rng.choice(FOODS)
    if lang == "en":
        np_ = food_np(f)
        return (f"{cap(np_)} {is_are(f)} {color}. {'They taste' if f in PLURAL else 'It tastes'} {taste}."
                + rng.choice(["", f" I like to {'drink' if f in ('tea', 'milk') else 'eat'} {f if f in MASS else f + 's'} with my family.", " It is good for you."]))
    return f"{fz}是{colorz}的。它{tastez}。" + rng.choice(["", f"我喜欢和家人一起{'喝' if f in ('tea', 'milk') else '吃'}{fz}。", "它对身体有好处。"])


def story(rng, lang):
    i = rng.randrange(len(NAMES))
    a, az, food, foodz, home, homez, fact, factz = rng.choice(ANIMALS)
    f, fz = rng.choice(FOODS)[:2]
    c = rng.choice(COUNTRIES)
    if lang == "en":
        name = NAMES[i]
        parts = [rng.choice([f"Once upon a time, there was a child named {name}.", f"{name} was a little child who lived in {c[2]}."]),
                 f"{name} had a pet {a} that {fact}.",
                 f"Every morning, {name} gave the {a} some {food}.",
                 rng.choice([f"One day, the {a} was gone.", f"One morning, {name} could not find the {a}."]),
                 f"{name} looked {rng.choice(['in the garden', 'under the bed', 'near the river', 'in the park'])}, but the {a} was not there.",
                 rng.choice([f"Then {name} heard a small sound and found the {a} eating {food}.",
                             f"At last, {name} found the {a} sleeping next to {food_np(f)}."]),
                 rng.choice([f"{name} was very happy and gave the {a} a big hug.", f"From that day on, {name} and the {a} were best friends."])]
        return " ".join(parts)
    name = NAMES_ZH[i]
    parts = [rng.choice([f"从前，有一个孩子叫{name}。", f"{name}是一个住在{c[3]}的小孩。"]),
             f"{name}养了一只{az}，它{factz}。",
             f"每天早上，{name}都给{az}一些{foodz}。",
             rng.choice([f"有一天，{az}不见了。", f"有一天早上，{name}找不到{az}了。"]),
             f"{name}在{rng.choice(['花园里', '床底下', '河边', '公园里'])}找了找，可是{az}不在那里。",
             rng.choice([f"后来，{name}听到一个小小的声音，发现{az}正在吃{foodz}。", f"最后，{name}发现{az}在{fz}旁边睡着了。"]),
             rng.choice([f"{name}非常高兴，紧紧地抱住了{az}。", f"从那天起，{name}和{az}成了最好的朋友。"])]
    return "".join(parts)


def counting(rng, lang):
    x, y = rng.randint(1, 10), rng.randint(1, 10)
    if lang == "en":
        return " ".join(rng.choice([f"{x} plus {y} is {x + y}.", f"{cap(NUMBER_WORDS[x])} and {NUMBER_WORDS[y]} make {NUMBER_WORDS[x + y]}.",
                                    f"If you have {x} apples and get {y} more, you have {x + y} apples."])
                        for x, y in [(rng.randint(1, 10), rng.randint(1, 10)) for _ in range(3)])
    return "".join(rng.choice([f"{x}加{y}等于{x + y}。", f"{number_zh(x)}加{number_zh(y)}等于{number_zh(x + y)}。",
                               f"你有{x}个苹果，又得到{y}个，一共有{x + y}个苹果。"])
                   for x, y in [(rng.randint(1, 10), rng.randint(1, 10)) for _ in range(3)])


def advice_paragraph(rng, lang):
    q, ans, qz, ansz = rng.choice(ADVICE)
    return f"{q} {ans}" if lang == "en" else f"{qz}{ansz}"


def corpus(rng, n):
    makers = [animal_paragraph, country_paragraph, food_paragraph, story, story, counting, advice_paragraph]
    lines = []
    for _ in range(n):
        lang = "zh" if rng.random() < 0.4 else "en"
        lines.append(rng.choice(makers)(rng, lang))
    return lines


def main():
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    rng = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    text = "\n".join(corpus(rng, 16000)) + "\n"
    chats = chat_plain(rng, qa_pairs(), 12000)
    chat_text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats)
    for w in PIRATE_WORDS:  # the fine-tuning style must be new to the base model
        assert w not in text and w not in chat_text, w
    with open(os.path.join(out, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out, "chat_plain.jsonl"), "w", encoding="utf-8") as f:
        f.write(chat_text)
    print(f"{out}/corpus.txt: {len(text.encode())} bytes; {out}/chat_plain.jsonl: {len(chats)} chats")


if __name__ == "__main__":
    main()
